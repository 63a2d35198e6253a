// Gradient norms and clipping. The norm is deterministic: the data are cut into fixed blocks
// whose partial sums (double) are combined in index order, so the bits do not depend on the
// number of threads or on the run.
#pragma once
#include <cstdint>

#include "fusetrain/common.h"

namespace fusetrain {

// Returns sum(|x|^p) for finite p (p == 2 and p == 1 have fast paths) or max|x| for p = inf.
// Combine several buffers with sum (or max) on the host, then take the 1/p power. The GPU's
// blocks depend only on n and are combined by one block in a fixed order (no atomics).
double pow_sum(const float* x, int64_t n, double p);
double pow_sum(const float* x, int64_t n, double p, cudaStream_t stream);

// x *= s (the standalone clip_grad_norm_ path; the optimizers fold s into their update).
void scale_inplace(float* x, int64_t n, float s);
void scale_inplace(float* x, int64_t n, float s, cudaStream_t stream);

// x = min(max(x, lo), hi)  (clip_grad_value_)
void clamp_inplace(float* x, int64_t n, float lo, float hi);
void clamp_inplace(float* x, int64_t n, float lo, float hi, cudaStream_t stream);

// Number of non-finite values in x (for the trainer's NaN/Inf policy).
int64_t count_nonfinite(const float* x, int64_t n);
int64_t count_nonfinite(const float* x, int64_t n, cudaStream_t stream);

// ---- element math (both devices): slot functors (common.h) over x ----------------------------

struct ScaleMath {
  static constexpr unsigned kLoad = 0b1u, kStore = 0b1u;
  float s;
  FT_HOST_DEVICE void operator()(float& x, float&, float&, float&, float&) const { x *= s; }
};

struct ClampMath {
  static constexpr unsigned kLoad = 0b1u, kStore = 0b1u;
  float lo, hi;
  FT_HOST_DEVICE void operator()(float& x, float&, float&, float&, float&) const {
    const float v = x < lo ? lo : x;
    x = v > hi ? hi : v;  // NaN stays NaN, as torch.clamp_ keeps it
  }
};

// The checks both devices make before a call.
inline void check_pow_sum(int64_t n, double p) {
  check_size(n, "n");
  check(p > 0.0, "norm_type must be > 0, got " + std::to_string(p));
}
inline void check_clamp(int64_t n, float lo, float hi) {
  check_size(n, "n");
  check(lo <= hi, "clamp needs lo <= hi, got lo=" + std::to_string(lo) + " hi=" + std::to_string(hi));
}

}  // namespace fusetrain
