// Batch normalization over x laid out (N, C, S): S = 1 for (N, C), L for (N, C, L), H*W for images.
// Statistics per channel c over N*S values, accumulated in double.
#pragma once
#include <cstdint>

namespace fusetrain {

// Training forward. x, y: (N, C, S); w, b: (C,) or null (affine=False); mean, invstd: (C,) outputs
// saved for backward; running_mean/var: (C,) updated in place with PyTorch's rule
// (r = (1-momentum)*r + momentum*stat, unbiased variance) or null.
// relu: y = max(y, 0).  dropout_p > 0 (only with relu): y *= keep/(1-p), mask from Philox(seed, offset).
void batchnorm_forward_train(const float* x, const float* w, const float* b, float* y, float* mean,
                             float* invstd, float* running_mean, float* running_var, int64_t N,
                             int64_t C, int64_t S, double eps, double momentum, bool relu,
                             double dropout_p, uint64_t seed, uint64_t offset);

// Eval forward with running statistics; writes invstd (C,) for an eval-mode backward.
void batchnorm_forward_eval(const float* x, const float* w, const float* b,
                            const float* running_mean, const float* running_var, float* y,
                            float* invstd, int64_t N, int64_t C, int64_t S, double eps, bool relu);

// Backward. dy, x, dx: (N, C, S); y: the forward output (needed only when relu; y > 0 marks the
// elements that pass, which also encodes a fused dropout mask); dropout_scale = 1/(1-p) or 1.
// training: batch statistics (the full formula); else mean/invstd are constants.
// dw, db: (C,) accumulated (+=), may be null. dx is overwritten.
void batchnorm_backward(const float* dy, const float* x, const float* y, const float* w,
                        const float* mean, const float* invstd, float* dx, float* dw, float* db,
                        int64_t N, int64_t C, int64_t S, bool relu, double dropout_scale,
                        bool training);

}  // namespace fusetrain
