// Gradient norms and clipping. The norm is deterministic: the data are cut into fixed blocks
// whose partial sums (double) are combined in index order, so the bits do not depend on the
// number of threads or on the run.
#pragma once
#include <cstdint>

namespace fusetrain {

// Returns sum(|x|^p) for finite p (p == 2 and p == 1 have fast paths) or max|x| for p = inf.
// Combine several buffers with sum (or max) on the host, then take the 1/p power.
double pow_sum(const float* x, int64_t n, double p);

// x *= s (the standalone clip_grad_norm_ path; the optimizers fold s into their update).
void scale_inplace(float* x, int64_t n, float s);

// x = min(max(x, lo), hi)  (clip_grad_value_)
void clamp_inplace(float* x, int64_t n, float lo, float hi);

// Number of non-finite values in x (for the trainer's NaN/Inf policy).
int64_t count_nonfinite(const float* x, int64_t n);

}  // namespace fusetrain
