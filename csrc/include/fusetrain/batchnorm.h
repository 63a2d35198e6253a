// Batch normalization over x laid out (N, C, S): S = 1 for (N, C), L for (N, C, L), H*W for images.
// Statistics per channel c over N*S values, accumulated in double. The per-channel coefficients
// and the element math below are shared by the CPU and GPU kernels; the devices differ only in
// how they iterate and reduce.
// reference: torch.nn.functional.batch_norm; the backward as in aten's batch_norm_kernel.cpp.
#pragma once
#include <math.h>

#include <cstdint>

#include "fusetrain/common.h"
#include "fusetrain/philox.h"

namespace fusetrain {

// Training forward. x, y: (N, C, S); w, b: (C,) or null (affine=False); mean, invstd: (C,) outputs
// saved for backward; running_mean/var: (C,) updated in place with PyTorch's rule
// (r = (1-momentum)*r + momentum*stat, unbiased variance) or null.
// relu: y = max(y, 0).  dropout_p > 0 (only with relu): y *= keep/(1-p), mask from Philox(seed, offset).
void batchnorm_forward_train(const float* x, const float* w, const float* b, float* y, float* mean, float* invstd,
                             float* running_mean, float* running_var, int64_t N, int64_t C, int64_t S, double eps,
                             double momentum, bool relu, double dropout_p, uint64_t seed, uint64_t offset);
void batchnorm_forward_train(const float* x, const float* w, const float* b, float* y, float* mean, float* invstd,
                             float* running_mean, float* running_var, int64_t N, int64_t C, int64_t S, double eps,
                             double momentum, bool relu, double dropout_p, uint64_t seed, uint64_t offset,
                             cudaStream_t stream);

// Eval forward with running statistics; writes invstd (C,) for an eval-mode backward.
void batchnorm_forward_eval(const float* x, const float* w, const float* b, const float* running_mean,
                            const float* running_var, float* y, float* invstd, int64_t N, int64_t C, int64_t S,
                            double eps, bool relu);
void batchnorm_forward_eval(const float* x, const float* w, const float* b, const float* running_mean,
                            const float* running_var, float* y, float* invstd, int64_t N, int64_t C, int64_t S,
                            double eps, bool relu, cudaStream_t stream);

// Backward. dy, x, dx: (N, C, S); y: the forward output (needed only when relu; y > 0 marks the
// elements that pass, which also encodes a fused dropout mask); dropout_scale = 1/(1-p) or 1.
// training: batch statistics (the full formula); else mean/invstd are constants.
// dw, db: (C,) accumulated (+=), may be null. dx is overwritten.
void batchnorm_backward(const float* dy, const float* x, const float* y, const float* w, const float* mean,
                        const float* invstd, float* dx, float* dw, float* db, int64_t N, int64_t C, int64_t S,
                        bool relu, double dropout_scale, bool training);
void batchnorm_backward(const float* dy, const float* x, const float* y, const float* w, const float* mean,
                        const float* invstd, float* dx, float* dw, float* db, int64_t N, int64_t C, int64_t S,
                        bool relu, double dropout_scale, bool training, cudaStream_t stream);

// The kernels' preconditions, checked alike on both devices before anything runs.
inline void check_batchnorm_sizes(int64_t N, int64_t C, int64_t S) {
  check(N >= 0 && C >= 0 && S >= 0, "batchnorm sizes must be >= 0, got N=" + std::to_string(N) +
                                        " C=" + std::to_string(C) + " S=" + std::to_string(S));
}
inline void check_batchnorm_train(int64_t N, int64_t C, int64_t S, bool relu, double dropout_p, uint64_t offset) {
  check_batchnorm_sizes(N, C, S);
  const int64_t values = checked_mul(N, S, "x");
  check(values > 1, "batchnorm training needs more than 1 value per channel, got " + std::to_string(values));
  check(dropout_p == 0.0 || relu, "fused dropout after batchnorm needs relu");
  check(dropout_p >= 0.0 && dropout_p < 1.0, "dropout_p must be in [0, 1), got " + std::to_string(dropout_p));
  check(offset % 4 == 0, "dropout offset must be a multiple of 4, got " + std::to_string(offset));
}

// ---- per-channel coefficients (both devices) --------------------------------------------------

// y = x*alpha + beta for one channel: the normalization and the affine folded together.
struct BnAffine {
  float alpha, beta;
};

// Training: from the channel's sums over cnt values (sum x, sum x^2), its mean and invstd (saved
// for backward), the running-statistics update (PyTorch's rule, unbiased variance) and the folded
// affine. A negative variance from cancellation is clamped to 0; NaN stays NaN.
FT_HOST_DEVICE BnAffine bn_train_coefficients(int64_t c, double sum, double sumsq, double cnt, double eps,
                                              double momentum, const float* w, const float* b, float* mean,
                                              float* invstd, float* running_mean, float* running_var) {
  const double mu = sum / cnt;
  const double dev = sumsq / cnt - mu * mu;
  const double var = dev < 0.0 ? 0.0 : dev;
  const double is = 1.0 / sqrt(var + eps);
  mean[c] = float(mu);
  invstd[c] = float(is);
  if (running_mean) {
    running_mean[c] = float((1.0 - momentum) * double(running_mean[c]) + momentum * mu);
    running_var[c] = float((1.0 - momentum) * double(running_var[c]) + momentum * var * cnt / (cnt - 1.0));
  }
  const double a = w ? is * double(w[c]) : is;
  return BnAffine{float(a), float((b ? double(b[c]) : 0.0) - mu * a)};
}

// Eval: the running statistics folded the same way; invstd saved for an eval-mode backward.
FT_HOST_DEVICE BnAffine bn_eval_coefficients(int64_t c, double eps, const float* w, const float* b,
                                             const float* running_mean, const float* running_var, float* invstd) {
  const double is = 1.0 / sqrt(double(running_var[c]) + eps);
  invstd[c] = float(is);
  const double a = w ? is * double(w[c]) : is;
  return BnAffine{float(a), float((b ? double(b[c]) : 0.0) - double(running_mean[c]) * a)};
}

// Backward: dx = k*dy' + kx*(x - mean) + k0 for one channel, from its sums over cnt values
// (sdy = sum dy', sdyx = sum dy'*(x - mean)), which also give dw and db (accumulated). (x - mean)
// stays a difference so a large mean does not cancel away the precision.
struct BnGrad {
  float k, kx, k0;
};

FT_HOST_DEVICE BnGrad bn_backward_coefficients(int64_t c, double sdy, double sdyx, double cnt, bool need_sums,
                                               bool training, const float* w, const float* invstd, float* dw,
                                               float* db) {
  const double is = double(invstd[c]);
  if (need_sums) {
    if (dw) dw[c] += float(sdyx * is);
    if (db) db[c] += float(sdy);
  }
  const double a = w ? double(w[c]) * is : is;
  if (!training) return BnGrad{float(a), 0.0f, 0.0f};
  return BnGrad{float(a), float(-a * is * is * sdyx / cnt), float(-a * sdy / cnt)};
}

// ---- element math (both devices) -------------------------------------------------------------

// Forward element: the folded affine, then the fused ReLU and the dropout after it (keep: the
// element's Philox test, dropout.h's convention; scale = 1/(1-p)).
template <bool kRelu, bool kDrop>
FT_HOST_DEVICE float bn_apply(float x, float alpha, float beta, bool keep, float scale) {
  float v = x * alpha + beta;
  if constexpr (kRelu) v = v <= 0.0f ? 0.0f : v;
  if constexpr (kDrop) v = keep ? v * scale : 0.0f;
  return v;
}

// dy' : dy passed back through a fused ReLU and the dropout after it (ds = 1/(1-p)); y <= 0 marks
// what was blocked (a NaN output passes its gradient, as in PyTorch).
template <bool kRelu>
FT_HOST_DEVICE float bn_grad_through(float dy, float y, float ds) {
  if constexpr (kRelu) return y <= 0.0f ? 0.0f : dy * ds;
  return dy;
}

// Backward element: dx = k*dy' + kx*(x - mean) + k0.
FT_HOST_DEVICE float bn_grad_apply(float g, float x, float mean, float k, float kx, float k0) {
  return k * g + kx * (x - mean) + k0;
}

}  // namespace fusetrain
