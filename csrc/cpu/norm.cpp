// Deterministic norms and element-wise clipping helpers (CPU).
// pow_sum cuts x into fixed blocks of kNormBlock elements; each block's partial (double) does not
// depend on which thread computed it, and the partials are added in index order, so the result is
// bitwise the same for any thread count and any run.
#include "fusetrain/norm.h"

#include <omp.h>

#include <cmath>
#include <vector>

#include "fusetrain/common.h"

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
  std::vector<double> part(nb);
#pragma omp parallel for schedule(static) if (nb > 1)
  for (int64_t b = 0; b < nb; ++b) {
    int64_t lo = b * kNormBlock, hi = lo + kNormBlock < n ? lo + kNormBlock : n;
    part[b] = block_reduce<kKind>(x + lo, hi - lo, p);
  }
  double total = 0.0;
  for (int64_t b = 0; b < nb; ++b) {
    if constexpr (kKind == 2) {
      if (std::isnan(part[b]) || std::isnan(total)) total = NAN;
      else total = part[b] > total ? part[b] : total;
    } else {
      total += part[b];
    }
  }
  return total;
}

}  // namespace

double pow_sum(const float* x, int64_t n, double p) {
  check_size(n, "n");
  check(p > 0.0, "norm_type must be > 0");
  if (n == 0) return 0.0;
  if (std::isinf(p)) return blocked<2>(x, n, p);
  if (p == 2.0) return blocked<0>(x, n, p);
  if (p == 1.0) return blocked<1>(x, n, p);
  return blocked<3>(x, n, p);
}

void scale_inplace(float* __restrict x, int64_t n, float s) {
  check_size(n, "n");
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

void clamp_inplace(float* __restrict x, int64_t n, float lo, float hi) {
  check_size(n, "n");
  check(lo <= hi, "clamp needs lo <= hi");
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i];
    v = v < lo ? lo : v;
    x[i] = v > hi ? hi : v;  // NaN stays NaN, as torch.clamp_ keeps it
  }
}

int64_t count_nonfinite(const float* __restrict x, int64_t n) {
  check_size(n, "n");
  int64_t bad = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : bad) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) bad += std::isfinite(x[i]) ? 0 : 1;
  return bad;
}

}  // namespace fusetrain
