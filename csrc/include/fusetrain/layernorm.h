// Layer normalization over the last D values of each of N rows.
// reference: torch.nn.functional.layer_norm.
#pragma once
#include <cstdint>

#include "fusetrain/common.h"

namespace fusetrain {

// x, y: (N, D) (y may alias x); w, b: (D,) or null; mean, rstd: (N,) saved for backward.
void layernorm_forward(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd, int64_t N,
                       int64_t D, double eps);
void layernorm_forward(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd, int64_t N,
                       int64_t D, double eps, cudaStream_t stream);

// dy, x, dx: (N, D); dw, db: (D,) accumulated (+=) or null; dx overwritten (may alias dy).
// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * w, per row.
void layernorm_backward(const float* dy, const float* x, const float* w, const float* mean, const float* rstd,
                        float* dx, float* dw, float* db, int64_t N, int64_t D);
void layernorm_backward(const float* dy, const float* x, const float* w, const float* mean, const float* rstd,
                        float* dx, float* dw, float* db, int64_t N, int64_t D, cudaStream_t stream);

inline void check_layernorm_sizes(int64_t N, int64_t D) {
  check(N >= 0 && D >= 0, "layernorm sizes must be >= 0, got N=" + std::to_string(N) + " D=" + std::to_string(D));
}

}  // namespace fusetrain
