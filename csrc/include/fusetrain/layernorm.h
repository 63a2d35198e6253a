// Layer normalization over the last D values of each of N rows.
#pragma once
#include <cstdint>

namespace fusetrain {

// x, y: (N, D); w, b: (D,) or null; mean, rstd: (N,) saved for backward.
void layernorm_forward(const float* x, const float* w, const float* b, float* y, float* mean,
                       float* rstd, int64_t N, int64_t D, double eps);

// dy, x, dx: (N, D); dw, db: (D,) accumulated (+=) or null; dx overwritten (may alias dy).
void layernorm_backward(const float* dy, const float* x, const float* w, const float* mean,
                        const float* rstd, float* dx, float* dw, float* db, int64_t N, int64_t D);

}  // namespace fusetrain
