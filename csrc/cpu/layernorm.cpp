// Layer normalization (CPU): rows are independent; each row's statistics in double (two passes
// over a row that sits in cache). Parameter gradients use {parts, D} partials over fixed runs
// of rows, combined in part order. reference: torch.nn.functional.layer_norm.
#include "fusetrain/layernorm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "fusetrain/common.h"
#include "fusetrain/parallel.h"

namespace fusetrain {

void layernorm_forward(const float* x, const float* w, const float* b, float* y, float* mean,
                       float* rstd, int64_t N, int64_t D, double eps) {
  check_layernorm_sizes(N, D);
  if (D == 0) return;
  parallel_chunks(N, N * D, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
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
  });
}

void layernorm_backward(const float* dy, const float* x, const float* w, const float* mean,
                        const float* rstd, float* dx, float* dw, float* db, int64_t N, int64_t D) {
  check_layernorm_sizes(N, D);
  if (D == 0) return;
  const bool params = dw || db;
  // Rows in fixed parts, each with its own {2D} parameter partials, combined in part order.
  const int parts = reduction_parts(N);
  const int64_t per = (N + parts - 1) / parts;
  std::vector<double> part(params ? size_t(parts) * size_t(2 * D) : 0, 0.0);
  parallel_tasks(parts, threads_for(N * D), [&](int64_t q, int) {
    double* pw = params ? part.data() + size_t(q) * size_t(2 * D) : nullptr;
    double* pb = params ? pw + D : nullptr;
    for (int64_t r = q * per; r < std::min(N, (q + 1) * per); ++r) {
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
  });
  if (params) {
    for (int64_t i = 0; i < D; ++i) {
      double sw = 0.0, sb = 0.0;
      for (int q = 0; q < parts; ++q) {
        sw += part[size_t(q) * size_t(2 * D) + size_t(i)];
        sb += part[size_t(q) * size_t(2 * D) + size_t(D + i)];
      }
      if (dw) dw[i] += float(sw);
      if (db) db[i] += float(sb);
    }
  }
}

}  // namespace fusetrain
