// Layer normalization (CPU): rows are independent; each row's statistics in double (two passes
// over a row that sits in cache). Parameter gradients use per-thread {threads, D} partials
// combined in thread order. reference: torch.nn.functional.layer_norm.
#include "fusetrain/layernorm.h"

#include <omp.h>

#include <cmath>
#include <vector>

#include "fusetrain/common.h"

namespace fusetrain {

void layernorm_forward(const float* x, const float* w, const float* b, float* y, float* mean,
                       float* rstd, int64_t N, int64_t D, double eps) {
  check(N >= 0 && D >= 0, "layernorm sizes must be >= 0");
  if (D == 0) return;
#pragma omp parallel for schedule(static) if (N * D > kParallelGrain)
  for (int64_t r = 0; r < N; ++r) {
    const float* xr = x + r * D;
    float* yr = y + r * D;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < D; ++i) s += double(xr[i]);
    const double mu = s / double(D);
    double q = 0.0;
#pragma omp simd reduction(+ : q)
    for (int64_t i = 0; i < D; ++i) {
      double d = double(xr[i]) - mu;
      q += d * d;
    }
    const double rs = 1.0 / std::sqrt(q / double(D) + eps);
    mean[r] = float(mu);
    rstd[r] = float(rs);
    const float m = float(mu), is = float(rs);
    if (w) {
#pragma omp simd
      for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - m) * is * w[i] + b[i];
    } else {
#pragma omp simd
      for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - m) * is;
    }
  }
}

void layernorm_backward(const float* dy, const float* x, const float* w, const float* mean,
                        const float* rstd, float* dx, float* dw, float* db, int64_t N, int64_t D) {
  check(N >= 0 && D >= 0, "layernorm sizes must be >= 0");
  if (D == 0) return;
  const int nt = omp_get_max_threads();
  const bool params = dw || db;
  std::vector<double> part(params ? size_t(nt) * size_t(2 * D) : 0, 0.0);
#pragma omp parallel if (N * D > kParallelGrain)
  {
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    double* pw = params ? part.data() + size_t(t) * size_t(2 * D) : nullptr;
    double* pb = params ? pw + D : nullptr;
    Range rr = split_range(N, t, T, 1);
    for (int64_t r = rr.begin; r < rr.end; ++r) {
      const float* xr = x + r * D;
      const float* gr = dy + r * D;
      float* dr = dx + r * D;
      const float m = mean[r], is = rstd[r];
      double sg = 0.0, sgx = 0.0;
#pragma omp simd reduction(+ : sg, sgx)
      for (int64_t i = 0; i < D; ++i) {
        const float xh = (xr[i] - m) * is;
        const float g = w ? gr[i] * w[i] : gr[i];
        sg += double(g);
        sgx += double(g) * double(xh);
      }
      const float a = float(sg / double(D)), bx = float(sgx / double(D));
      // Parameter partials before dx is written: dx may be the same array as dy.
      if (params) {
#pragma omp simd
        for (int64_t i = 0; i < D; ++i) {
          pw[i] += double(gr[i]) * double((xr[i] - m) * is);
          pb[i] += double(gr[i]);
        }
      }
#pragma omp simd
      for (int64_t i = 0; i < D; ++i) {
        const float xh = (xr[i] - m) * is;
        const float g = w ? gr[i] * w[i] : gr[i];
        dr[i] = is * (g - a - xh * bx);
      }
    }
  }
  if (params) {
    for (int64_t i = 0; i < D; ++i) {
      double sw = 0.0, sb = 0.0;
      for (int t = 0; t < nt; ++t) {
        sw += part[size_t(t) * size_t(2 * D) + size_t(i)];
        sb += part[size_t(t) * size_t(2 * D) + size_t(D + i)];
      }
      if (dw) dw[i] += float(sw);
      if (db) db[i] += float(sb);
    }
  }
}

}  // namespace fusetrain
