// Deterministic norms, scaling, clamping and non-finite counting on the GPU (scaling and clamping
// are the slot functors of fusetrain/norm.h).
// pow_sum: each thread accumulates quads in double, blocks reduce with a fixed tree and write one
// partial each, one block combines the partials (reduce_to_host): no atomics, and the launch
// shape depends only on n, so the result is bitwise the same on every run.
#include <cmath>

#include "common.cuh"
#include "fusetrain/norm.h"
#include "slots.cuh"

namespace fusetrain {

using namespace gpu;

namespace {

enum class PowKind { kSquare, kAbs, kMaxAbs, kPow };

// The combination of |x|^p (or max |x|) over the quad of elements [4q, 4q + 4) of x.
template <PowKind K>
struct PowQuad {
  const float* x;
  int64_t n;
  double p;
  bool vec;
  __device__ __forceinline__ double operator()(int64_t q) const {
    const int64_t e0 = 4 * q;
    const int cnt = n - e0 < 4 ? int(n - e0) : 4;
    float r[4];
    load4(r, x, e0, cnt, vec);
    double acc = 0.0;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (j >= cnt) break;
      const double v = double(r[j]);
      if constexpr (K == PowKind::kSquare) acc += v * v;
      if constexpr (K == PowKind::kAbs) acc += fabs(v);
      if constexpr (K == PowKind::kMaxAbs) acc = MaxNanOp{}(acc, fabs(v));
      if constexpr (K == PowKind::kPow) acc += pow(fabs(v), p);
    }
    return acc;
  }
};

struct NonfiniteQuad {
  const float* x;
  int64_t n;
  bool vec;
  __device__ __forceinline__ long long operator()(int64_t q) const {
    const int64_t e0 = 4 * q;
    const int cnt = n - e0 < 4 ? int(n - e0) : 4;
    float r[4];
    load4(r, x, e0, cnt, vec);
    long long bad = 0;
#pragma unroll
    for (int j = 0; j < 4; ++j) bad += (j < cnt && !isfinite(r[j])) ? 1 : 0;
    return bad;
  }
};

template <PowKind K>
double pow_sum_kind(const float* x, int64_t n, double p, cudaStream_t stream) {
  const PowQuad<K> src{x, n, p, aligned16({x})};
  if constexpr (K == PowKind::kMaxAbs) {
    return reduce_to_host<double>(src, cdiv(n, 4), MaxNanOp{}, stream, "pow_sum");
  } else {
    return reduce_to_host<double>(src, cdiv(n, 4), SumOp<double>{}, stream, "pow_sum");
  }
}

}  // namespace

double pow_sum(const float* x, int64_t n, double p, cudaStream_t stream) {
  check_pow_sum(n, p);
  if (n == 0) return 0.0;
  if (std::isinf(p)) return pow_sum_kind<PowKind::kMaxAbs>(x, n, p, stream);
  if (p == 2.0) return pow_sum_kind<PowKind::kSquare>(x, n, p, stream);
  if (p == 1.0) return pow_sum_kind<PowKind::kAbs>(x, n, p, stream);
  return pow_sum_kind<PowKind::kPow>(x, n, p, stream);
}

void scale_inplace(float* x, int64_t n, float s, cudaStream_t stream) {
  check_size(n, "n");
  run_slots(ScaleMath{s}, Slots{{x, nullptr, nullptr, nullptr, nullptr}}, n, stream, "scale_inplace");
}

void clamp_inplace(float* x, int64_t n, float lo, float hi, cudaStream_t stream) {
  check_clamp(n, lo, hi);
  run_slots(ClampMath{lo, hi}, Slots{{x, nullptr, nullptr, nullptr, nullptr}}, n, stream, "clamp_inplace");
}

int64_t count_nonfinite(const float* x, int64_t n, cudaStream_t stream) {
  check_size(n, "n");
  if (n == 0) return 0;
  const NonfiniteQuad src{x, n, aligned16({x})};
  return int64_t(reduce_to_host<long long>(src, cdiv(n, 4), SumOp<long long>{}, stream, "count_nonfinite"));
}

}  // namespace fusetrain
