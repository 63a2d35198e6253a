// Eval-mode epilogues (CPU): per-channel scale, shift and activation in one pass; the residual add.
#include "fusetrain/epilogue.h"

#include <cmath>
#include <vector>

#include "fusetrain/common.h"
#include "fusetrain/parallel.h"

namespace fusetrain {
namespace {

// One contiguous run of one channel (kVec false: scalar alpha/beta) or one row of channels (kVec
// true: alpha/beta per element), restrict-qualified so the loop vectorizes.
template <Act A, bool kVec>
void affine_run(const float* __restrict x, float* __restrict y, const float* __restrict al, const float* __restrict be,
                float a1, float b1, int64_t n, float slope) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = act_fwd<A>(x[i] * (kVec ? al[i] : a1) + (kVec ? be[i] : b1), slope);
}

// The same, y == x.
template <Act A, bool kVec>
void affine_run_inplace(float* __restrict y, const float* __restrict al, const float* __restrict be, float a1, float b1,
                        int64_t n, float slope) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = act_fwd<A>(y[i] * (kVec ? al[i] : a1) + (kVec ? be[i] : b1), slope);
}

template <Act A>
void affine_act(const float* x, float* y, int64_t N, int64_t C, int64_t S, const float* al, const float* be,
                float slope) {
  const bool inplace = x == y;
  if (S == 1) {  // (N, C): rows of channels
    parallel_chunks(N, N * C, [=](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        if (inplace)
          affine_run_inplace<A, true>(y + r * C, al, be, 0.f, 0.f, C, slope);
        else
          affine_run<A, true>(x + r * C, y + r * C, al, be, 0.f, 0.f, C, slope);
      }
    });
    return;
  }
  parallel_chunks(N * C, N * C * S, [=](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t c = j % C;
      if (inplace)
        affine_run_inplace<A, false>(y + j * S, nullptr, nullptr, al[c], be[c], S, slope);
      else
        affine_run<A, false>(x + j * S, y + j * S, nullptr, nullptr, al[c], be[c], S, slope);
    }
  });
}

template <Act A>
void add_run(const float* a, const float* b, float* out, int64_t n, float slope) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = act_fwd<A>(a[i] + b[i], slope);
}

template <Act A>
void add_act_impl(const float* a, const float* b, float* out, int64_t n, float slope) {
  parallel_for(n, [=](int64_t lo, int64_t hi) { add_run<A>(a + lo, b + lo, out + lo, hi - lo, slope); });
}

}  // namespace

void epilogue_coeffs(const Epilogue& e, int64_t C, float* alpha, float* beta) {
  check(C >= 0, "channels must be >= 0");
  check((e.mean == nullptr) == (e.var == nullptr), "batchnorm mean and var must both be given");
  for (int64_t c = 0; c < C; ++c) {
    const double bias = e.bias ? double(e.bias[c]) : 0.0;
    if (e.mean) {
      const double a = (e.w ? double(e.w[c]) : 1.0) / std::sqrt(double(e.var[c]) + e.eps);
      alpha[c] = float(a);
      beta[c] = float((bias - double(e.mean[c])) * a + (e.b ? double(e.b[c]) : 0.0));
    } else {
      alpha[c] = 1.0f;
      beta[c] = float(bias);
    }
  }
}

void channel_affine_act(const float* x, float* y, int64_t N, int64_t C, int64_t S, const Epilogue& e) {
  check(N >= 0 && C >= 0 && S >= 0, "epilogue sizes must be >= 0");
  if (N * C * S == 0) return;
  std::vector<float> alpha(static_cast<size_t>(C)), beta(static_cast<size_t>(C));
  epilogue_coeffs(e, C, alpha.data(), beta.data());
  const float* al = alpha.data();
  const float* be = beta.data();
  with_act(e.act, [&](auto A) { affine_act<decltype(A)::value>(x, y, N, C, S, al, be, e.slope); });
}

void add_act(const float* a, const float* b, float* out, int64_t n, Act act, float slope) {
  check_size(n, "n");
  with_act(act, [&](auto A) { add_act_impl<decltype(A)::value>(a, b, out, n, slope); });
}

}  // namespace fusetrain
