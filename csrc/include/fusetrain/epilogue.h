// Eval-mode epilogues: what follows a convolution or a Linear layer at inference -- its bias, an
// eval-mode batchnorm (running statistics, folded into a per-channel scale and shift) and an
// activation -- applied in one pass, v -> act(alpha[c] * v + beta[c]). Also the residual add.
// reference: torch.nn.BatchNorm2d in eval mode (y = (v - mean) / sqrt(var + eps) * w + b).
#pragma once
#include <cstdint>

#include "fusetrain/activation.h"

namespace fusetrain {

struct Epilogue {
  const float* bias = nullptr;  // (C,): added to the layer's output first
  const float* mean = nullptr;  // eval batchnorm (all four null when there is none): running mean,
  const float* var = nullptr;   // running variance,
  const float* w = nullptr;     // and the affine weight and bias (null when affine=False)
  const float* b = nullptr;
  double eps = 1e-5;
  Act act = Act::kIdentity;
  float slope = 0.01f;  // LeakyReLU's negative slope
};

// alpha, beta (C,) of the epilogue, computed in double: with a batchnorm, alpha = w/sqrt(var+eps)
// and beta = (bias - mean)*alpha + b; without, alpha = 1 and beta = bias (or 0).
void epilogue_coeffs(const Epilogue& e, int64_t C, float* alpha, float* beta);

// y (N, C, S) = act(alpha[c] * x + beta[c]); y may be x.
void channel_affine_act(const float* x, float* y, int64_t N, int64_t C, int64_t S, const Epilogue& e);

// out = act(a + b) over n elements (a residual block's sum and the ReLU after it); out may be a or b.
void add_act(const float* a, const float* b, float* out, int64_t n, Act act, float slope);

}  // namespace fusetrain
