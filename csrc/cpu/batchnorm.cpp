// Batch normalization (CPU) on x laid out (N, C, S). Forward: one statistics pass (sum and sum of
// squares in double) and one apply pass y = x*alpha[c] + beta[c] (+ReLU, +dropout). Backward:
// one reduction pass (sum dy, sum dy*(x-mean)) and one pass dx = k*dy + kx*(x - mean) + k0 per channel.
// reference: torch.nn.functional.batch_norm; backward as in aten's batch_norm_kernel.cpp.
#include "fusetrain/batchnorm.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "fusetrain/common.h"
#include "philox_cpu.h"

namespace fusetrain {
namespace {

// Per-channel sums of f0(e) and f1(e) over (N, S); fn(c, idx) yields the pair for element idx.
// S == 1: rows are split over threads, each with a {threads, C} partial, combined in order.
// S > 1: channels are split over threads.
template <class Fn>
void channel_sums(int64_t N, int64_t C, int64_t S, std::vector<double>& s0, std::vector<double>& s1,
                  Fn&& pair) {
  s0.assign(size_t(C), 0.0);
  s1.assign(size_t(C), 0.0);
  const int64_t n = N * C * S;
  if (S == 1) {
    const int nt = omp_get_max_threads();
    std::vector<double> part(size_t(nt) * size_t(2 * C), 0.0);
#pragma omp parallel if (n > kParallelGrain)
    {
      const int t = omp_get_thread_num(), T = omp_get_num_threads();
      double* a0 = part.data() + size_t(t) * size_t(2 * C);
      double* a1 = a0 + C;
      Range r = split_range(N, t, T, 1);
      for (int64_t row = r.begin; row < r.end; ++row) {
        const int64_t base = row * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
          double v0, v1;
          pair(c, base + c, v0, v1);
          a0[c] += v0;
          a1[c] += v1;
        }
      }
    }
    for (int t = 0; t < nt; ++t)
      for (int64_t c = 0; c < C; ++c) {
        s0[size_t(c)] += part[size_t(t) * size_t(2 * C) + size_t(c)];
        s1[size_t(c)] += part[size_t(t) * size_t(2 * C) + size_t(C + c)];
      }
  } else {
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
    for (int64_t c = 0; c < C; ++c) {
      double a0 = 0.0, a1 = 0.0;
      for (int64_t b = 0; b < N; ++b) {
        const int64_t base = (b * C + c) * S;
#pragma omp simd reduction(+ : a0, a1)
        for (int64_t s = 0; s < S; ++s) {
          double v0, v1;
          pair(c, base + s, v0, v1);
          a0 += v0;
          a1 += v1;
        }
      }
      s0[size_t(c)] = a0;
      s1[size_t(c)] = a1;
    }
  }
}

// Applies out[e] = fn(c, e) over the tensor in mask tiles; within a tile, runs of one channel
// (S > 1) or of one row (S == 1) keep the inner loop contiguous.
template <class Fn>
void channel_apply(int64_t N, int64_t C, int64_t S, bool words, uint64_t seed, uint64_t offset,
                   Fn&& fn) {
  const int64_t n = N * C * S;
  for_each_mask_tile(n, words, seed, offset, [&](int64_t e0, int64_t e1, const uint32_t* w) {
    for (int64_t e = e0; e < e1;) {
      if (S == 1) {
        const int64_t c0 = e % C, end = std::min(e1, e - c0 + C);
#pragma omp simd
        for (int64_t i = 0; i < end - e; ++i) fn(c0 + i, e + i, w ? w[e - e0 + i] : 0u);
        e = end;
      } else {
        const int64_t c = (e / S) % C, end = std::min(e1, (e / S + 1) * S);
#pragma omp simd
        for (int64_t i = 0; i < end - e; ++i) fn(c, e + i, w ? w[e - e0 + i] : 0u);
        e = end;
      }
    }
  });
}

}  // namespace

void batchnorm_forward_train(const float* x, const float* w, const float* b, float* y, float* mean,
                             float* invstd, float* running_mean, float* running_var, int64_t N,
                             int64_t C, int64_t S, double eps, double momentum, bool relu,
                             double dropout_p, uint64_t seed, uint64_t offset) {
  check(N >= 0 && C >= 0 && S >= 0, "batchnorm sizes must be >= 0");
  const int64_t cnt = N * S;
  check(cnt > 1, "batchnorm training needs more than 1 value per channel");
  check(dropout_p == 0.0 || relu, "fused dropout after batchnorm needs relu");
  check(dropout_p >= 0.0 && dropout_p < 1.0 && offset % 4 == 0, "bad dropout arguments");
  std::vector<double> s0, s1;
  channel_sums(N, C, S, s0, s1, [&](int64_t, int64_t e, double& v0, double& v1) {
    double v = double(x[e]);
    v0 = v;
    v1 = v * v;
  });
  std::vector<float> alpha(static_cast<size_t>(C)), beta(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const double mu = s0[size_t(c)] / double(cnt);
    const double var = std::max(s1[size_t(c)] / double(cnt) - mu * mu, 0.0);
    const double is = 1.0 / std::sqrt(var + eps);
    mean[c] = float(mu);
    invstd[c] = float(is);
    if (running_mean) {
      running_mean[c] = float((1.0 - momentum) * double(running_mean[c]) + momentum * mu);
      running_var[c] = float((1.0 - momentum) * double(running_var[c]) +
                             momentum * var * double(cnt) / double(cnt - 1));
    }
    const double a = w ? is * double(w[c]) : is;
    alpha[size_t(c)] = float(a);
    beta[size_t(c)] = float((b ? double(b[c]) : 0.0) - mu * a);
  }
  const float* al = alpha.data();
  const float* be = beta.data();
  const bool drop = dropout_p > 0.0;
  const uint32_t thr = dropout_threshold(dropout_p);
  const float scale = float(1.0 / (1.0 - dropout_p));
  channel_apply(N, C, S, drop, seed, offset, [&](int64_t c, int64_t e, uint32_t word) {
    float v = x[e] * al[c] + be[c];
    if (relu) v = v > 0.0f ? v : 0.0f;
    if (drop) v = (word >> 8) >= thr ? v * scale : 0.0f;
    y[e] = v;
  });
}

void batchnorm_forward_eval(const float* x, const float* w, const float* b,
                            const float* running_mean, const float* running_var, float* y,
                            float* invstd, int64_t N, int64_t C, int64_t S, double eps, bool relu) {
  check(N >= 0 && C >= 0 && S >= 0, "batchnorm sizes must be >= 0");
  std::vector<float> alpha(static_cast<size_t>(C)), beta(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const double is = 1.0 / std::sqrt(double(running_var[c]) + eps);
    invstd[c] = float(is);
    const double a = w ? is * double(w[c]) : is;
    alpha[size_t(c)] = float(a);
    beta[size_t(c)] = float((b ? double(b[c]) : 0.0) - double(running_mean[c]) * a);
  }
  const float* al = alpha.data();
  const float* be = beta.data();
  channel_apply(N, C, S, false, 0, 0, [&](int64_t c, int64_t e, uint32_t) {
    float v = x[e] * al[c] + be[c];
    y[e] = relu ? (v > 0.0f ? v : 0.0f) : v;
  });
}

void batchnorm_backward(const float* dy, const float* x, const float* y, const float* w,
                        const float* mean, const float* invstd, float* dx, float* dw, float* db,
                        int64_t N, int64_t C, int64_t S, bool relu, double dropout_scale,
                        bool training) {
  check(N >= 0 && C >= 0 && S >= 0, "batchnorm sizes must be >= 0");
  check(!relu || y != nullptr, "batchnorm backward with relu needs the forward output");
  const float ds = float(dropout_scale);
  // dy' = dy passed back through the (fused) ReLU and dropout.
  auto dyp = [=](int64_t e) -> float { return relu ? (y[e] > 0.0f ? dy[e] * ds : 0.0f) : dy[e]; };
  std::vector<double> sdy, sdyx;
  const bool need_sums = training || dw || db;
  if (need_sums) {
    channel_sums(N, C, S, sdy, sdyx, [&](int64_t c, int64_t e, double& v0, double& v1) {
      double g = double(dyp(e));
      v0 = g;
      v1 = g * (double(x[e]) - double(mean[c]));
    });
  }
  const double cnt = double(N * S);
  std::vector<float> k(static_cast<size_t>(C)), kx(static_cast<size_t>(C)), k0(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const double is = double(invstd[c]);
    if (need_sums) {
      if (dw) dw[c] += float(sdyx[size_t(c)] * is);
      if (db) db[c] += float(sdy[size_t(c)]);
    }
    const double a = w ? double(w[c]) * is : is;
    k[size_t(c)] = float(a);
    if (training) {
      // dx = a*dy' - a*is^2/cnt*sdyx*(x - mean) - a/cnt*sdy; (x - mean) is kept as a
      // difference so a large mean does not cancel away the precision.
      kx[size_t(c)] = float(-a * is * is * sdyx[size_t(c)] / cnt);
      k0[size_t(c)] = float(-a * sdy[size_t(c)] / cnt);
    } else {
      kx[size_t(c)] = 0.0f;
      k0[size_t(c)] = 0.0f;
    }
  }
  const float* kp = k.data();
  const float* kxp = kx.data();
  const float* k0p = k0.data();
  channel_apply(N, C, S, false, 0, 0, [&](int64_t c, int64_t e, uint32_t) {
    dx[e] = kp[c] * dyp(e) + kxp[c] * (x[e] - mean[c]) + k0p[c];
  });
}

}  // namespace fusetrain
