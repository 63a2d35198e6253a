// Dropout and the fused GEMM epilogue y = dropout(act(x + bias)). Masks come from philox.h.
#pragma once
#include <cstdint>

#include "fusetrain/activation.h"

namespace fusetrain {

// Forward over x: (N, F) row-major (N = 1 for a flat buffer). bias: (F,) or null.
// p == 0 disables dropout. offset must be a multiple of 4. y may alias x.
// bits: optional packed keep-mask, (n + 7) / 8 bytes, bit e%8 of byte e/8.
void bias_act_dropout_forward(const float* x, const float* bias, float* y, int64_t N, int64_t F,
                              Act act, float slope, double p, uint64_t seed, uint64_t offset,
                              uint8_t* bits);

// Backward: dx = dy * keep/(1-p) * act'(pre) and dbias += column sums of dx (if dbias).
// y is the forward output (act' is computed from it). The keep mask is read from bits when
// given, taken from y > 0 for ReLU (exact: a dropped or inactive element has y == 0), and
// otherwise regenerated from (seed, offset). dx may alias dy.
void bias_act_dropout_backward(const float* dy, const float* y, float* dx, float* dbias, int64_t N,
                               int64_t F, Act act, float slope, double p, uint64_t seed,
                               uint64_t offset, const uint8_t* bits);

// Keep-mask as bytes (0/1), for tests and the NumPy twin's reference.
void dropout_mask(uint8_t* keep, int64_t n, double p, uint64_t seed, uint64_t offset);

}  // namespace fusetrain
