// Layer normalization on the GPU, mirroring csrc/cpu/layernorm.cpp: one block per row, the row's
// statistics in double (two passes over a row that sits in L1/L2) with fixed-tree block sums;
// parameter gradients as column sums down the rows (per-block partials, fixed-order combination).
// reference: torch.nn.functional.layer_norm; semantics in csrc/include/fusetrain/layernorm.h.
#include <cmath>

#include "common.cuh"
#include "fusetrain/layernorm.h"

namespace fusetrain {

using namespace gpu;

namespace {

// Threads per row block: enough to cover a short row, at most kThreads.
int row_threads(int64_t D) { return D <= 64 ? 32 : D <= 256 ? 64 : D <= 1024 ? 128 : kThreads; }

// x, y: (N, D) (y may alias x); w, b: (D,) or null; mean, rstd: (N,).
__global__ void __launch_bounds__(kThreads)
layernorm_forward_kernel(const float* x, const float* w, const float* b, float* y, float* mean,
                         float* rstd, int64_t N, int64_t D, double eps) {
  __shared__ double smem[32];
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const float* xr = x + r * D;
    float* yr = y + r * D;
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) s += double(xr[i]);
    const double mu = block_allreduce(s, SumOp<double>{}, smem) / double(D);
    double q = 0.0;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
      const double d = double(xr[i]) - mu;
      q += d * d;
    }
    q = block_allreduce(q, SumOp<double>{}, smem);
    const double rs = 1.0 / sqrt(q / double(D) + eps);
    if (threadIdx.x == 0) {
      mean[r] = float(mu);
      rstd[r] = float(rs);
    }
    const float m = float(mu), is = float(rs);
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
      yr[i] = w ? (xr[i] - m) * is * w[i] + b[i] : (xr[i] - m) * is;
  }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * w, per row.
__global__ void __launch_bounds__(kThreads)
layernorm_backward_kernel(const float* dy, const float* x, const float* w, const float* mean,
                          const float* rstd, float* dx, int64_t N, int64_t D) {
  __shared__ double2 smem[32];
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const float* xr = x + r * D;
    const float* gr = dy + r * D;
    float* dr = dx + r * D;
    const float m = mean[r], is = rstd[r];
    double2 acc = make_double2(0.0, 0.0);
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
      const float xh = (xr[i] - m) * is;
      const float g = w ? gr[i] * w[i] : gr[i];
      acc.x += double(g);
      acc.y += double(g) * double(xh);
    }
    acc = block_allreduce(acc, SumOp<double2>{}, smem);
    const float a = float(acc.x / double(D)), bx = float(acc.y / double(D));
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
      const float xh = (xr[i] - m) * is;
      const float g = w ? gr[i] * w[i] : gr[i];
      dr[i] = is * (g - a - xh * bx);
    }
  }
}

// Column sums of (dy * xhat, dy) for dw and db.
struct ParamTerms {
  const float *dy, *x, *mean, *rstd;
  bool vec;
  __device__ __forceinline__ void quad(int64_t r, int64_t, int64_t e0, int cnt, double2 (&acc)[4]) const {
    float g[4], xv[4];
    load4(g, dy, e0, cnt, vec);
    load4(xv, x, e0, cnt, vec);
    const float m = mean[r], is = rstd[r];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (j >= cnt) break;
      acc[j].x += double(g[j]) * double((xv[j] - m) * is);
      acc[j].y += double(g[j]);
    }
  }
};


}  // namespace

void layernorm_forward(const float* x, const float* w, const float* b, float* y, float* mean,
                       float* rstd, int64_t N, int64_t D, double eps, cudaStream_t stream) {
  check_layernorm_sizes(N, D);
  check((w == nullptr) == (b == nullptr), "layernorm weight and bias must both be given or both be null");
  if (D == 0 || N == 0) return;
  layernorm_forward_kernel<<<grid_for(N, 1), row_threads(D), 0, stream>>>(x, w, b, y, mean, rstd, N, D, eps);
  check_launch("layernorm_forward");
}

void layernorm_backward(const float* dy, const float* x, const float* w, const float* mean,
                        const float* rstd, float* dx, float* dw, float* db, int64_t N, int64_t D,
                        cudaStream_t stream) {
  check_layernorm_sizes(N, D);
  if (D == 0 || N == 0) return;
  const char* name = "layernorm_backward";
  // Parameter sums first: they read dy, which dx is allowed to overwrite.
  if (dw || db) {
    const ColumnPlan plan = column_plan(N, D);
    Scratch sums(sizeof(double2) * size_t(plan.chunks * D), stream);
    double2* partial = sums.as<double2>();
    const bool vec = D % 4 == 0 && aligned16({dy, x});
    launch_column_partials(ParamTerms{dy, x, mean, rstd, vec}, N, D, plan, partial, stream, name);
    launch_add_column_sums(partial, plan.chunks, D, dw, db, stream, name);
  }
  layernorm_backward_kernel<<<grid_for(N, 1), row_threads(D), 0, stream>>>(dy, x, w, mean, rstd, dx, N, D);
  check_launch(name);
}

}  // namespace fusetrain
