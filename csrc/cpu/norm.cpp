// Deterministic norms and the element-wise clipping helpers (CPU; scaling and clamping are the
// slot functors of fusetrain/norm.h).
// pow_sum cuts x into fixed blocks of kNormBlock elements; each block's partial (double) does not
// depend on which thread computed it, and the partials are added in index order, so the result is
// bitwise the same for any thread count and any run.
#include "fusetrain/norm.h"

#include <atomic>
#include <cmath>
#include <vector>

#include "fusetrain/common.h"
#include "fusetrain/parallel.h"
#include "slots.h"

namespace fusetrain {
namespace {

constexpr int64_t kNormBlock = 1 << 16;

template <int kKind>  // 0: sum x^2, 1: sum |x|, 2: max |x|, 3: sum |x|^p
double block_reduce(const float* __restrict x, int64_t n, double p) {
  double acc = 0.0;
  if constexpr (kKind == 0) {
#pragma omp simd reduction(+ : acc)
    for (int64_t i = 0; i < n; ++i) acc += double(x[i]) * double(x[i]);
  } else if constexpr (kKind == 1) {
#pragma omp simd reduction(+ : acc)
    for (int64_t i = 0; i < n; ++i) acc += std::fabs(double(x[i]));
  } else if constexpr (kKind == 2) {
    float m = 0.0f;
    bool nan = false;
#pragma omp simd reduction(max : m) reduction(|| : nan)
    for (int64_t i = 0; i < n; ++i) {
      float a = std::fabs(x[i]);
      nan = nan || (a != a);
      m = a > m ? a : m;
    }
    acc = nan ? NAN : double(m);
  } else {
    for (int64_t i = 0; i < n; ++i) acc += std::pow(std::fabs(double(x[i])), p);
  }
  return acc;
}

template <int kKind>
double blocked(const float* x, int64_t n, double p) {
  const int64_t nb = (n + kNormBlock - 1) / kNormBlock;
  std::vector<double> part(static_cast<size_t>(nb));
  parallel_tasks(nb, nb > 1 ? num_threads() : 1, [&](int64_t b, int) {
    int64_t lo = b * kNormBlock, hi = lo + kNormBlock < n ? lo + kNormBlock : n;
    part[size_t(b)] = block_reduce<kKind>(x + lo, hi - lo, p);
  });
  double total = 0.0;
  for (const double v : part) {
    if constexpr (kKind == 2) {
      if (std::isnan(v) || std::isnan(total))
        total = NAN;
      else
        total = v > total ? v : total;
    } else {
      total += v;
    }
  }
  return total;
}

}  // namespace

double pow_sum(const float* x, int64_t n, double p) {
  check_pow_sum(n, p);
  if (n == 0) return 0.0;
  if (std::isinf(p)) return blocked<2>(x, n, p);
  if (p == 2.0) return blocked<0>(x, n, p);
  if (p == 1.0) return blocked<1>(x, n, p);
  return blocked<3>(x, n, p);
}

namespace {

int64_t nonfinite_run(const float* __restrict x, int64_t n) {
  int64_t bad = 0;
#pragma omp simd reduction(+ : bad)
  for (int64_t i = 0; i < n; ++i) bad += std::isfinite(x[i]) ? 0 : 1;
  return bad;
}

}  // namespace

void scale_inplace(float* x, int64_t n, float s) {
  check_size(n, "n");
  run_slots(ScaleMath{s}, Slots{{x, nullptr, nullptr, nullptr, nullptr}}, n);
}

void clamp_inplace(float* x, int64_t n, float lo, float hi) {
  check_clamp(n, lo, hi);
  run_slots(ClampMath{lo, hi}, Slots{{x, nullptr, nullptr, nullptr, nullptr}}, n);
}

int64_t count_nonfinite(const float* x, int64_t n) {
  check_size(n, "n");
  std::atomic<int64_t> bad{0};
  parallel_for(
      n, [&](int64_t lo, int64_t hi) { bad.fetch_add(nonfinite_run(x + lo, hi - lo), std::memory_order_relaxed); });
  return bad.load();
}

}  // namespace fusetrain
