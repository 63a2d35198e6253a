// Losses on the GPU, mirroring csrc/cpu/loss.cpp. Softmax cross-entropy: one block per row
// computes the row max, the exp-sum in double, the row's loss and its gradient; the row losses are
// then summed by the deterministic two-stage reduction. Squared error: that reduction's first
// stage writes each element's gradient as it reads the element.
#include <cmath>

#include "common.cuh"
#include "fusetrain/loss.h"

namespace fusetrain {

using namespace gpu;

namespace {

int row_threads(int64_t K) { return K <= 64 ? 32 : K <= 256 ? 64 : K <= 1024 ? 128 : kThreads; }

// logits, dlogits: (N, K); labels: (N,); row_loss: (N,) double. A label outside [0, K) (the ops
// layer rejects those) gives a NaN loss rather than an out-of-bounds read.
__global__ void __launch_bounds__(kThreads)
    softmax_cross_entropy_kernel(const float* logits, const int64_t* labels, float* dlogits, double* row_loss,
                                 int64_t N, int64_t K, double grad_scale) {
  __shared__ float fmem[32];
  __shared__ double dmem[32];
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const float* z = logits + r * K;
    float mx = -INFINITY;
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x) mx = MaxFloatOp{}(mx, z[k]);
    mx = block_allreduce(mx, MaxFloatOp{}, fmem);
    const double dmx = double(mx);
    double s = 0.0;
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x) s += exp(double(z[k]) - dmx);
    s = block_allreduce(s, SumOp<double>{}, dmem);
    const int64_t y = labels[r];
    const bool valid = y >= 0 && y < K;
    if (threadIdx.x == 0)
      row_loss[r] = valid ? log(s) - (double(z[y]) - dmx) : __longlong_as_double(0x7ff8000000000000LL);
    if (dlogits) {
      float* g = dlogits + r * K;
      const double inv = grad_scale / s;
      for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
        float v = float(exp(double(z[k]) - dmx) * inv);
        if (k == y) v = float(double(v) - grad_scale);
        g[k] = v;
      }
    }
  }
}

// Element i's squared error, its gradient written on the way (each element is read exactly once).
struct MseItem {
  const float *pred, *target;
  float* grad;
  float scale;
  __device__ __forceinline__ double operator()(int64_t i) const {
    const MseElement e(pred[i], target[i]);
    if (grad) grad[i] = e.grad(scale);
    return e.loss();
  }
};

}  // namespace

double softmax_cross_entropy(const float* logits, const int64_t* labels, float* dlogits, int64_t N, int64_t K,
                             double grad_scale, cudaStream_t stream) {
  check_softmax_cross_entropy_sizes(N, K);
  if (N == 0) return 0.0;
  const char* name = "softmax_cross_entropy";
  Scratch losses(sizeof(double) * size_t(N), stream);
  double* row_loss = losses.as<double>();
  softmax_cross_entropy_kernel<<<grid_for(N, 1), row_threads(K), 0, stream>>>(logits, labels, dlogits, row_loss, N, K,
                                                                              grad_scale);
  check_launch(name);
  return reduce_to_host<double>(ArraySrc<double>{row_loss}, N, SumOp<double>{}, stream, name);
}

double mse_loss(const float* pred, const float* target, float* grad, int64_t n, float grad_scale, cudaStream_t stream) {
  check_size(n, "n");
  if (n == 0) return 0.0;
  return reduce_to_host<double>(MseItem{pred, target, grad, grad_scale}, n, SumOp<double>{}, stream, "mse_loss");
}

}  // namespace fusetrain
