// Host entry points of the CUDA kernels (fusetrain._cuda). Each mirrors the CPU kernel of the same
// name (optim.h, norm.h, batchnorm.h, layernorm.h, dropout.h, loss.h, conv.h define the semantics) on
// device pointers, enqueued on `stream`. They return without synchronizing, except the functions
// that return a host value (pow_sum, count_nonfinite, softmax_xent), which wait for their result.
// Plain C++: the bindings include this header without nvcc.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "fusetrain/conv.h"

namespace fusetrain {
namespace gpu {

// optim.h
void sgd_step(float* p, const float* g, float* buf, int64_t n, double lr, double momentum,
              double dampening, double weight_decay, bool nesterov, bool first_step,
              double grad_scale, cudaStream_t stream);
void adagrad_step(float* p, const float* g, float* sum, int64_t n, double clr, double weight_decay,
                  double eps, double grad_scale, cudaStream_t stream);
void rmsprop_step(float* p, const float* g, float* sq, float* gavg, float* buf, int64_t n,
                  double lr, double alpha, double eps, double weight_decay, double momentum,
                  double grad_scale, cudaStream_t stream);
void adam_step(float* p, const float* g, float* m, float* v, float* vmax, int64_t n, double lr,
               double beta1, double beta2, double eps, double weight_decay, bool decoupled,
               int64_t step, double grad_scale, cudaStream_t stream);
void ema_update(float* avg, const float* p, int64_t n, double decay, cudaStream_t stream);

// norm.h. pow_sum is bitwise deterministic: a grid whose shape depends only on n writes one
// partial per block, and a single block combines them in a fixed order (no atomics).
double pow_sum(const float* x, int64_t n, double p, cudaStream_t stream);
void scale_inplace(float* x, int64_t n, float s, cudaStream_t stream);
void clamp_inplace(float* x, int64_t n, float lo, float hi, cudaStream_t stream);
int64_t count_nonfinite(const float* x, int64_t n, cudaStream_t stream);

// batchnorm.h
void batchnorm_forward_train(const float* x, const float* w, const float* b, float* y, float* mean,
                             float* invstd, float* running_mean, float* running_var, int64_t N,
                             int64_t C, int64_t S, double eps, double momentum, bool relu,
                             double dropout_p, uint64_t seed, uint64_t offset, cudaStream_t stream);
void batchnorm_forward_eval(const float* x, const float* w, const float* b,
                            const float* running_mean, const float* running_var, float* y,
                            float* invstd, int64_t N, int64_t C, int64_t S, double eps, bool relu,
                            cudaStream_t stream);
void batchnorm_backward(const float* dy, const float* x, const float* y, const float* w,
                        const float* mean, const float* invstd, float* dx, float* dw, float* db,
                        int64_t N, int64_t C, int64_t S, bool relu, double dropout_scale,
                        bool training, cudaStream_t stream);

// layernorm.h
void layernorm_forward(const float* x, const float* w, const float* b, float* y, float* mean,
                       float* rstd, int64_t N, int64_t D, double eps, cudaStream_t stream);
void layernorm_backward(const float* dy, const float* x, const float* w, const float* mean,
                        const float* rstd, float* dx, float* dw, float* db, int64_t N, int64_t D,
                        cudaStream_t stream);

// dropout.h (act is the Act code: 0 identity, 1 relu, 2 leaky_relu, 3 tanh, 4 sigmoid)
void bias_act_dropout_forward(const float* x, const float* bias, float* y, int64_t N, int64_t F,
                              int act, float slope, double p, uint64_t seed, uint64_t offset,
                              cudaStream_t stream);
void bias_act_dropout_backward(const float* dy, const float* y, float* dx, float* dbias, int64_t N,
                               int64_t F, int act, float slope, double p, uint64_t seed,
                               uint64_t offset, cudaStream_t stream);
void dropout_mask(uint8_t* keep, int64_t n, double p, uint64_t seed, uint64_t offset,
                  cudaStream_t stream);
// One Philox4x32-10 block computed on the device (known-answer and CPU-parity tests).
void philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1,
                   uint32_t out[4], cudaStream_t stream);

// loss.h; labels is an int64 device array. Returns the summed loss.
double softmax_xent(const float* logits, const int64_t* labels, float* dlogits, int64_t N,
                    int64_t K, double grad_scale, cudaStream_t stream);

// conv.h. window2d_init fills OH/OW with the CPU's rules (conv.h's inline window2d_init) and
// also refuses planes too large for the kernels' 32-bit in-plane indices; the launchers re-check
// the geometry they are given. No atomics: each output element is written by one thread that sums
// its inputs in the CPU kernel's order (maxpool2d_backward routes per plane instead when some
// window holds no pixel), so col2im2d and the pooling backwards are deterministic, and col2im2d,
// maxpool2d_backward and adaptive_avgpool2d_backward give the CPU's bits. nc_to_cn's bias sums
// are per-block partials in double combined in a fixed order.
void window2d_init(Window2d& g);
void im2col2d(const float* x, float* col, int64_t N, int64_t C, const Window2d& g, cudaStream_t stream);
void col2im2d(const float* col, float* dx, int64_t N, int64_t C, const Window2d& g, cudaStream_t stream);
void cn_to_nc(const float* src, const float* bias, float* dst, int64_t N, int64_t C, int64_t S,
              cudaStream_t stream);
void nc_to_cn(const float* src, float* dst, float* dbias, int64_t N, int64_t C, int64_t S, cudaStream_t stream);
void maxpool2d_forward(const float* x, float* y, int32_t* idx, int64_t P, const Window2d& g, cudaStream_t stream);
void maxpool2d_backward(const float* dy, const int32_t* idx, float* dx, int64_t P, const Window2d& g,
                        cudaStream_t stream);
void avgpool2d_forward(const float* x, float* y, int64_t P, const Window2d& g, bool count_include_pad,
                       cudaStream_t stream);
void avgpool2d_backward(const float* dy, float* dx, int64_t P, const Window2d& g, bool count_include_pad,
                        cudaStream_t stream);
void adaptive_avgpool2d_forward(const float* x, float* y, int64_t P, int64_t H, int64_t W, int64_t OH,
                                int64_t OW, cudaStream_t stream);
void adaptive_avgpool2d_backward(const float* dy, float* dx, int64_t P, int64_t H, int64_t W, int64_t OH,
                                 int64_t OW, cudaStream_t stream);

}  // namespace gpu
}  // namespace fusetrain
