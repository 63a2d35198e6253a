// Dropout and the fused epilogue y = dropout(act(x + bias)) (CPU), forward and backward, on the
// element math of fusetrain/dropout.h. Work is cut into mask tiles (philox_cpu.h); inside a tile,
// runs of one row share the bias offset, so the inner loops are plain contiguous loops the
// compiler vectorizes.
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
  for (int64_t i = 0; i < len; ++i) kb[i] = words ? uint8_t(dropout_keep(words[i], thr)) : uint8_t(1);
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


// One contiguous run, with the scalars passed by value: read through a lambda's captures they sit
// in memory the stores might alias, and the loop stayed scalar (measured 4x slower). y may equal x
// (in place); `omp simd` is right for that since element i only reads and writes index i.
template <Act A, bool kBias, bool kDrop>
void forward_run(const float* x, const float* b, float* y, const uint32_t* w, int64_t len,
                 float slope, float scale, uint32_t thr) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i)
    y[i] = epilogue_forward<A, kDrop>(kBias ? x[i] + b[i] : x[i], slope, kDrop && dropout_keep(w[i], thr), scale);
}

template <Act A, bool kBias, bool kDrop>
void forward_impl(const float* x, const float* bias, float* y, int64_t n, int64_t F, float slope, const DropoutArgs& a,
                  uint8_t* bits) {
  const float scale = a.scale;
  const uint32_t thr = a.threshold;
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
  constexpr MaskFrom M = kMask == 0 ? MaskFrom::kNone : kMask == 1 ? MaskFrom::kSign : MaskFrom::kKeep;
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    const bool keep = kMask == 2 ? kb[i] != 0 : kMask == 3 && dropout_keep(w[i], thr);
    dx[i] = epilogue_backward<A, M>(dy[i], y[i], keep, slope, scale, inv_scale);
  }
}

template <Act A, int kMask>
void backward_impl(const float* dy, const float* y, float* dx, float* dbias, int64_t n, int64_t F, float slope,
                   const DropoutArgs& a, const uint8_t* bits) {
  const float scale = a.scale, inv_scale = a.inv_scale;
  const uint32_t thr = a.threshold;
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
void forward_act(const float* x, const float* bias, float* y, int64_t n, int64_t F, float slope, const DropoutArgs& a,
                 bool drop, uint8_t* bits) {
  if (bias) {
    drop ? forward_impl<A, true, true>(x, bias, y, n, F, slope, a, bits)
         : forward_impl<A, true, false>(x, bias, y, n, F, slope, a, bits);
  } else {
    drop ? forward_impl<A, false, true>(x, bias, y, n, F, slope, a, bits)
         : forward_impl<A, false, false>(x, bias, y, n, F, slope, a, bits);
  }
}

template <Act A>
void backward_act(const float* dy, const float* y, float* dx, float* dbias, int64_t n, int64_t F, float slope,
                  const DropoutArgs& a, bool drop, const uint8_t* bits) {
  if (!drop) return backward_impl<A, 0>(dy, y, dx, dbias, n, F, slope, a, bits);
  if (bits) return backward_impl<A, 2>(dy, y, dx, dbias, n, F, slope, a, bits);
  if constexpr (A == Act::kRelu) return backward_impl<A, 1>(dy, y, dx, dbias, n, F, slope, a, bits);
  return backward_impl<A, 3>(dy, y, dx, dbias, n, F, slope, a, bits);
}

}  // namespace

void bias_act_dropout_forward(const float* x, const float* bias, float* y, int64_t N, int64_t F, Act act, float slope,
                              double p, uint64_t seed, uint64_t offset, uint8_t* bits) {
  check_size(N, "N");
  check_size(F, "F");
  const DropoutArgs a = dropout_args(p, seed, offset);
  const int64_t n = N * F;
  if (n == 0) return;
  with_act(act, [&](auto A) { forward_act<decltype(A)::value>(x, bias, y, n, F, slope, a, p > 0.0, bits); });
}

void bias_act_dropout_backward(const float* dy, const float* y, float* dx, float* dbias, int64_t N, int64_t F, Act act,
                               float slope, double p, uint64_t seed, uint64_t offset, const uint8_t* bits) {
  check_size(N, "N");
  check_size(F, "F");
  const DropoutArgs a = dropout_args(p, seed, offset);
  const int64_t n = N * F;
  if (n == 0) return;
  with_act(act, [&](auto A) { backward_act<decltype(A)::value>(dy, y, dx, dbias, n, F, slope, a, p > 0.0, bits); });
}

void dropout_mask(uint8_t* keep, int64_t n, double p, uint64_t seed, uint64_t offset) {
  check_size(n, "n");
  const uint32_t thr = dropout_args(p, seed, offset).threshold;
  for_each_mask_tile(n, true, seed, offset, [&](int64_t e0, int64_t e1, const uint32_t* w) {
    for (int64_t e = e0; e < e1; ++e) keep[e] = dropout_keep(w[e - e0], thr) ? 1 : 0;
  });
}

}  // namespace fusetrain
