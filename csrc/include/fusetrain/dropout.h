// Dropout and the fused GEMM epilogue y = dropout(act(x + bias)), forward and backward, with the
// element math both devices share. Masks come from philox.h: a pure function of (seed, offset,
// element index), the same bits on either device and for any thread count.
#pragma once
#include <cstdint>

#include "fusetrain/activation.h"
#include "fusetrain/philox.h"

namespace fusetrain {

// Forward over x: (N, F) row-major (N = 1 for a flat buffer). bias: (F,) or null.
// p == 0 disables dropout. offset must be a multiple of 4. y may alias x.
// bits: optional packed keep-mask, (n + 7) / 8 bytes, bit e%8 of byte e/8 (CPU only: the GPU
// refuses one).
void bias_act_dropout_forward(const float* x, const float* bias, float* y, int64_t N, int64_t F, Act act, float slope,
                              double p, uint64_t seed, uint64_t offset, uint8_t* bits);
void bias_act_dropout_forward(const float* x, const float* bias, float* y, int64_t N, int64_t F, Act act, float slope,
                              double p, uint64_t seed, uint64_t offset, uint8_t* bits, cudaStream_t stream);

// Backward: dx = dy * keep/(1-p) * act'(pre) and dbias += column sums of dx (if dbias).
// y is the forward output (act' is computed from it). The keep mask is read from bits when
// given, taken from y > 0 for ReLU (exact: a dropped or inactive element has y == 0), and
// otherwise regenerated from (seed, offset). dx may alias dy.
void bias_act_dropout_backward(const float* dy, const float* y, float* dx, float* dbias, int64_t N, int64_t F, Act act,
                               float slope, double p, uint64_t seed, uint64_t offset, const uint8_t* bits);
void bias_act_dropout_backward(const float* dy, const float* y, float* dx, float* dbias, int64_t N, int64_t F, Act act,
                               float slope, double p, uint64_t seed, uint64_t offset, const uint8_t* bits,
                               cudaStream_t stream);

// Keep-mask as bytes (0/1), for tests and the NumPy twin's reference.
void dropout_mask(uint8_t* keep, int64_t n, double p, uint64_t seed, uint64_t offset);
void dropout_mask(uint8_t* keep, int64_t n, double p, uint64_t seed, uint64_t offset, cudaStream_t stream);

// One Philox4x32-10 block computed on the GPU (known-answer and CPU-parity tests); waits for it.
void philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1, uint32_t out[4],
                   cudaStream_t stream);

// A call's dropout scalars, after the checks both devices make: scale = 1/(1-p), inv_scale = 1-p
// (rounded to float alike on both devices) and the Philox keep threshold.
struct DropoutArgs {
  float scale, inv_scale;
  uint32_t threshold;
  uint64_t seed, offset;
};

inline DropoutArgs dropout_args(double p, uint64_t seed, uint64_t offset) {
  check(p >= 0.0 && p < 1.0, "dropout p must be in [0, 1), got " + std::to_string(p));
  check(offset % 4 == 0, "dropout offset must be a multiple of 4, got " + std::to_string(offset));
  return DropoutArgs{float(1.0 / (1.0 - p)), float(1.0 - p), dropout_threshold(p), seed, offset};
}

// ---- element math (both devices) -------------------------------------------------------------

// Forward element: act(z), then kept and scaled or dropped (keep: the element's Philox test).
template <Act A, bool kDrop>
FT_HOST_DEVICE float epilogue_forward(float z, float slope, bool keep, float scale) {
  float v = act_fwd<A>(z, slope);
  if constexpr (kDrop) v = keep ? v * scale : 0.0f;
  return v;
}

// Where the backward's keep mask comes from: none (p == 0), the sign of y (ReLU: a dropped or
// inactive element has y == 0), or a keep test per element (regenerated words or packed bits).
enum class MaskFrom { kNone, kSign, kKeep };

// Backward element: dy through the dropout and act'(pre), act' read off the forward output y
// (before its dropout scaling: y * inv_scale).
template <Act A, MaskFrom M>
FT_HOST_DEVICE float epilogue_backward(float dy, float y, bool keep, float slope, float scale, float inv_scale) {
  if constexpr (M == MaskFrom::kNone) return dy * act_grad<A>(y, slope);
  if constexpr (M == MaskFrom::kSign) return y <= 0.0f ? 0.0f : dy * scale;
  return keep ? dy * scale * act_grad<A>(y * inv_scale, slope) : 0.0f;
}

}  // namespace fusetrain
