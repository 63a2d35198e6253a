// Convolution. 1-D convolutions are the 2-D ones with H = 1, KH = 1. Images x are (N, C, H, W)
// row-major; weights (OC, C/groups, KH, KW). Gradient convention: input gradients are
// overwritten (=), parameter gradients accumulate (+=).
//
// On the CPU a convolution runs whole in conv2d_direct_* (csrc/cpu/conv.cpp: register tiles, no
// column matrix, no BLAS). The GPU route is im2col + cuBLAS (from fusetrain.ops, on CuPy arrays):
// the column matrix is (C*KH*KW, N*OH*OW) -- row r = (c, kh, kw), column = (n, oh, ow) -- so that
// forward, weight gradient and input gradient are each one GEMM over the whole batch. The CPU
// versions of those helpers (csrc/cpu/im2col.cpp) are the GPU's reference in the tests.
// reference: torch.nn.functional.conv2d / unfold / fold.
#pragma once
#include <cstdint>
#include <string>

#include "fusetrain/window.h"

namespace fusetrain {

struct Epilogue;

// x: (N, C, H, W) -> col: (C*KH*KW, N*OH*OW); padded positions are 0.
void im2col2d(const float* x, float* col, int64_t N, int64_t C, const Window2d& g);
void im2col2d(const float* x, float* col, int64_t N, int64_t C, const Window2d& g, cudaStream_t stream);

// The adjoint of im2col2d: dx (N, C, H, W) = sum of col entries that read each input pixel.
// dx is overwritten. Each pixel's taps are summed in (kh, kw) order on either device: the same
// bits for any thread count, and the GPU's equal the CPU's.
void col2im2d(const float* col, float* dx, int64_t N, int64_t C, const Window2d& g);
void col2im2d(const float* col, float* dx, int64_t N, int64_t C, const Window2d& g, cudaStream_t stream);

// src: (C, N*S) channel-major -> dst: (N, C, S), adding bias[c] (bias may be null).
void cn_to_nc(const float* src, const float* bias, float* dst, int64_t N, int64_t C, int64_t S);
void cn_to_nc(const float* src, const float* bias, float* dst, int64_t N, int64_t C, int64_t S, cudaStream_t stream);

// src: (N, C, S) -> dst: (C, N*S); dbias (C,) += per-channel sums of src when not null
// (summed in double, partials combined in a fixed order). Used for dy before the weight- and
// input-gradient GEMMs.
void nc_to_cn(const float* src, float* dst, float* dbias, int64_t N, int64_t C, int64_t S);
void nc_to_cn(const float* src, float* dst, float* dbias, int64_t N, int64_t C, int64_t S, cudaStream_t stream);

// The helpers' size preconditions, checked alike on both devices (`what` names the helper).
// Sizes of a grouped convolution: N >= 0; C, OC and groups >= 1, the channels divisible by groups.
inline void check_conv_sizes(int64_t N, int64_t C, int64_t OC, int64_t groups) {
  check(N >= 0 && C >= 1 && OC >= 1 && groups >= 1, "N must be >= 0, C, OC and groups >= 1");
  check(C % groups == 0 && OC % groups == 0, "C and OC must be divisible by groups");
}
inline void check_im2col_sizes(int64_t N, int64_t C, const char* what) {
  check(N >= 0 && C >= 0, std::string(what) + " sizes must be >= 0");
}
inline void check_layout_sizes(int64_t N, int64_t C, int64_t S, const char* what) {
  check(N >= 0 && C >= 0 && S >= 0, std::string(what) + " sizes must be >= 0");
}

// The direct convolution (CPU), any stride, padding, dilation and group count, on the register
// tiles; groups == C runs a depthwise kernel. The forward keeps the input zero-padded and split by
// stride phase, small images side by side in packs: `saved` (packs, size) floats from
// conv2d_direct_saved_shape, written by the forward, read by the backward. bias (OC,) or null,
// y (N, OC, OH, OW).
void conv2d_direct_saved_shape(int64_t N, int64_t C, const Window2d& g, int64_t& packs, int64_t& size);
// Instruction set of the register tiles picked for this CPU: "avx512", "avx2" or "portable".
const char* conv2d_direct_isa();
void conv2d_direct_forward(const float* x, const float* w, const float* bias, float* y, float* saved, int64_t N,
                           int64_t C, int64_t OC, int64_t groups, const Window2d& g);
// Eval-mode forward: nothing is saved; scratch_packs holds `slots` packs of conv2d_pack_size
// floats (one per thread, so at most `slots` threads run); y = epilogue(conv(x)) with the bias,
// a folded eval batchnorm and the activation of e (fusetrain/epilogue.h) applied per channel.
int64_t conv2d_pack_size(int64_t N, int64_t C, const Window2d& g);
void conv2d_forward_eval(const float* x, const float* w, float* y, float* scratch_packs, int64_t slots, int64_t N,
                         int64_t C, int64_t OC, int64_t groups, const Window2d& g, const Epilogue& e);
// dx (N, C, H, W) is overwritten (skipped when null); dw (OC, C/groups, KH, KW) and db (OC,)
// accumulate (+=, skipped when null). Weight and bias sums are partials over fixed runs of images
// (one run per thread; per channel for depthwise) combined in order: the same bits for a given
// thread count (any thread count for depthwise).
void conv2d_direct_backward(const float* dy, const float* saved, const float* w, float* dx, float* dw, float* db,
                            int64_t N, int64_t C, int64_t OC, int64_t groups, const Window2d& g);

}  // namespace fusetrain
