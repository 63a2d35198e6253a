// Dropout and the fused epilogue y = dropout(act(x + bias)) (CPU), forward and backward.
// Work is cut into mask tiles (philox_cpu.h); inside a tile, runs of one row share the bias
// offset, so the inner loops are plain contiguous loops the compiler vectorizes.
#include "fusetrain/dropout.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "fusetrain/common.h"
#include "fusetrain/parallel.h"
#include "philox_cpu.h"

namespace fusetrain {
namespace {

// Packs the keep bits of one tile (e0 is a multiple of 8): keep bytes first (a vector compare),
// then 8 bytes -> 1 by a multiply that gathers byte k's low bit into bit k of the top byte.
inline void pack_bits(uint8_t* bits, int64_t e0, int64_t e1, const uint32_t* words, uint32_t thr) {
  alignas(64) uint8_t kb[kMaskTile + 8] = {};
  const int64_t len = e1 - e0;
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) kb[i] = words ? uint8_t((words[i] >> 8) >= thr) : uint8_t(1);
  for (int64_t i = 0; i < len; i += 8) {
    uint64_t v;
    std::memcpy(&v, kb + i, 8);
    bits[(e0 + i) / 8] = uint8_t((v * 0x0102040810204080ull) >> 56);
  }
}

// Inverse of pack_bits for one tile: kb[i] != 0 iff element e0 + i was kept.
inline void unpack_bits(const uint8_t* bits, int64_t e0, int64_t e1, uint8_t* kb) {
  for (int64_t i = 0; i < e1 - e0; i += 8) {
    const uint64_t v = (uint64_t(bits[(e0 + i) / 8]) * 0x0101010101010101ull) & 0x8040201008040201ull;
    std::memcpy(kb + i, &v, 8);
  }
}

struct EpiArgs {
  int64_t F;
  float slope, scale, inv_scale;
  uint32_t thr;
  uint64_t seed, offset;
};

// One contiguous run, with the scalars passed by value: read through a lambda's captures they sit
// in memory the stores might alias, and the loop stayed scalar (measured 4x slower). y may equal x
// (in place); `omp simd` is right for that since element i only reads and writes index i.
template <Act A, bool kBias, bool kDrop>
void forward_run(const float* x, const float* b, float* y, const uint32_t* w, int64_t len,
                 float slope, float scale, uint32_t thr) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    float z = kBias ? x[i] + b[i] : x[i];
    float v = act_fwd<A>(z, slope);
    if constexpr (kDrop) v = (w[i] >> 8) >= thr ? v * scale : 0.0f;
    y[i] = v;
  }
}

template <Act A, bool kBias, bool kDrop>
void forward_impl(const float* x, const float* bias, float* y, int64_t n, const EpiArgs& a,
                  uint8_t* bits) {
  const float slope = a.slope, scale = a.scale;
  const uint32_t thr = a.thr;
  const int64_t F = a.F;
  for_each_mask_tile(n, kDrop, a.seed, a.offset, [=](int64_t e0, int64_t e1, const uint32_t* w) {
    for (int64_t e = e0; e < e1;) {
      const int64_t col = kBias ? e % F : 0;
      const int64_t end = kBias ? std::min(e1, e - col + F) : e1;
      forward_run<A, kBias, kDrop>(x + e, kBias ? bias + col : nullptr, y + e,
                                   kDrop ? w + (e - e0) : nullptr, end - e, slope, scale, thr);
      e = end;
    }
    if (bits) pack_bits(bits, e0, e1, w, thr);
  });
}

// Mask source in backward: 0 none (p == 0), 1 sign of y (ReLU), 2 packed bits, 3 regenerate.
template <Act A, int kMask>
void backward_run(const float* dy, const float* y, float* dx, const uint32_t* w, const uint8_t* kb,
                  int64_t len, float slope, float scale, float inv_scale, uint32_t thr) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    float g;
    if constexpr (kMask == 0) {
      g = dy[i] * act_grad<A>(y[i], slope);
    } else if constexpr (kMask == 1) {  // ReLU: y <= 0 iff dropped or inactive
      g = y[i] <= 0.0f ? 0.0f : dy[i] * scale;
    } else {
      bool keep;
      if constexpr (kMask == 2) keep = kb[i] != 0;
      else keep = (w[i] >> 8) >= thr;
      g = keep ? dy[i] * scale * act_grad<A>(y[i] * inv_scale, slope) : 0.0f;
    }
    dx[i] = g;
  }
}

template <Act A, int kMask>
void backward_impl(const float* dy, const float* y, float* dx, float* dbias, int64_t n,
                   const EpiArgs& a, const uint8_t* bits) {
  const int64_t F = a.F;
  const float slope = a.slope, scale = a.scale, inv_scale = a.inv_scale;
  const uint32_t thr = a.thr;
  // dbias: fixed parts (contiguous runs of tiles), each with its own partial column sums, added
  // in part order: the same bits for any thread count.
  const int64_t tiles = (n + kMaskTile - 1) / kMaskTile;
  const int parts = dbias ? reduction_parts(tiles) : int(std::min<int64_t>(tiles, 4 * int64_t(threads_for(n))));
  const int64_t per = (tiles + parts - 1) / parts;
  std::vector<double> part(dbias ? size_t(parts) * size_t(F) : 0, 0.0);
  parallel_tasks(parts, threads_for(n), [&](int64_t q, int) {
    double* acc = dbias ? part.data() + size_t(q) * size_t(F) : nullptr;
    alignas(64) uint32_t words[kMaskTile];
    alignas(64) uint8_t kb[kMaskTile + 8];
    for (int64_t t = q * per; t < std::min(tiles, (q + 1) * per); ++t) {
      int64_t e0 = t * kMaskTile, e1 = e0 + kMaskTile < n ? e0 + kMaskTile : n;
      if constexpr (kMask == 3) philox_words(words, uint64_t(e0), e1 - e0, a.seed, a.offset);
      if constexpr (kMask == 2) unpack_bits(bits, e0, e1, kb);
      for (int64_t e = e0; e < e1;) {
        int64_t col = dbias ? e % F : 0;
        int64_t end = dbias ? std::min(e1, e - col + F) : e1;
        const int64_t len = end - e;
        const float* dxb = dx + e;
        backward_run<A, kMask>(dy + e, y + e, dx + e, words + (e - e0), kb + (e - e0), end - e, slope,
                               scale, inv_scale, thr);
        if (acc) {
          double* ab = acc + col;
#pragma omp simd
          for (int64_t i = 0; i < len; ++i) ab[i] += double(dxb[i]);
        }
        e = end;
      }
    }
  });
  if (dbias) {  // fixed-order combination of the per-part partials
    for (int64_t c = 0; c < F; ++c) {
      double s = 0.0;
      for (int q = 0; q < parts; ++q) s += part[size_t(q) * size_t(F) + size_t(c)];
      dbias[c] += float(s);
    }
  }
}

template <Act A>
void forward_act(const float* x, const float* bias, float* y, int64_t n, const EpiArgs& a,
                 bool drop, uint8_t* bits) {
  if (bias) {
    drop ? forward_impl<A, true, true>(x, bias, y, n, a, bits)
         : forward_impl<A, true, false>(x, bias, y, n, a, bits);
  } else {
    drop ? forward_impl<A, false, true>(x, bias, y, n, a, bits)
         : forward_impl<A, false, false>(x, bias, y, n, a, bits);
  }
}

template <Act A>
void backward_act(const float* dy, const float* y, float* dx, float* dbias, int64_t n,
                  const EpiArgs& a, bool drop, const uint8_t* bits) {
  if (!drop) return backward_impl<A, 0>(dy, y, dx, dbias, n, a, bits);
  if (bits) return backward_impl<A, 2>(dy, y, dx, dbias, n, a, bits);
  if constexpr (A == Act::kRelu) return backward_impl<A, 1>(dy, y, dx, dbias, n, a, bits);
  return backward_impl<A, 3>(dy, y, dx, dbias, n, a, bits);
}

EpiArgs make_args(int64_t F, float slope, double p, uint64_t seed, uint64_t offset) {
  check(p >= 0.0 && p < 1.0, "dropout p must be in [0, 1)");
  check(offset % 4 == 0, "dropout offset must be a multiple of 4");
  return EpiArgs{F, slope, float(1.0 / (1.0 - p)), float(1.0 - p), dropout_threshold(p), seed, offset};
}

}  // namespace

void bias_act_dropout_forward(const float* x, const float* bias, float* y, int64_t N, int64_t F,
                              Act act, float slope, double p, uint64_t seed, uint64_t offset,
                              uint8_t* bits) {
  check_size(N, "N");
  check_size(F, "F");
  const int64_t n = N * F;
  if (n == 0) return;
  EpiArgs a = make_args(F, slope, p, seed, offset);
  const bool drop = p > 0.0;
  switch (act) {
    case Act::kIdentity: return forward_act<Act::kIdentity>(x, bias, y, n, a, drop, bits);
    case Act::kRelu: return forward_act<Act::kRelu>(x, bias, y, n, a, drop, bits);
    case Act::kLeakyRelu: return forward_act<Act::kLeakyRelu>(x, bias, y, n, a, drop, bits);
    case Act::kTanh: return forward_act<Act::kTanh>(x, bias, y, n, a, drop, bits);
    case Act::kSigmoid: return forward_act<Act::kSigmoid>(x, bias, y, n, a, drop, bits);
  }
}

void bias_act_dropout_backward(const float* dy, const float* y, float* dx, float* dbias, int64_t N,
                               int64_t F, Act act, float slope, double p, uint64_t seed,
                               uint64_t offset, const uint8_t* bits) {
  check_size(N, "N");
  check_size(F, "F");
  const int64_t n = N * F;
  if (n == 0) return;
  EpiArgs a = make_args(F, slope, p, seed, offset);
  const bool drop = p > 0.0;
  switch (act) {
    case Act::kIdentity: return backward_act<Act::kIdentity>(dy, y, dx, dbias, n, a, drop, bits);
    case Act::kRelu: return backward_act<Act::kRelu>(dy, y, dx, dbias, n, a, drop, bits);
    case Act::kLeakyRelu: return backward_act<Act::kLeakyRelu>(dy, y, dx, dbias, n, a, drop, bits);
    case Act::kTanh: return backward_act<Act::kTanh>(dy, y, dx, dbias, n, a, drop, bits);
    case Act::kSigmoid: return backward_act<Act::kSigmoid>(dy, y, dx, dbias, n, a, drop, bits);
  }
}

void dropout_mask(uint8_t* keep, int64_t n, double p, uint64_t seed, uint64_t offset) {
  check_size(n, "n");
  check(p >= 0.0 && p < 1.0, "dropout p must be in [0, 1)");
  check(offset % 4 == 0, "dropout offset must be a multiple of 4");
  const uint32_t thr = dropout_threshold(p);
  for_each_mask_tile(n, true, seed, offset, [&](int64_t e0, int64_t e1, const uint32_t* w) {
    for (int64_t e = e0; e < e1; ++e) keep[e] = (w[e - e0] >> 8) >= thr ? 1 : 0;
  });
}

}  // namespace fusetrain
