// Philox4x32-10 counter-based RNG (Salmon et al., SC'11), shared by the CPU and CUDA kernels so a
// dropout mask is a pure function of (seed, offset, element index) on either device.
#pragma once
#include <cstdint>
#include "fusetrain/common.h"

namespace fusetrain {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;  // golden ratio
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;  // sqrt(3) - 1

struct Philox4 { uint32_t v[4]; };

FT_HOST_DEVICE uint32_t mulhilo32(uint32_t a, uint32_t b, uint32_t* hi) {
  uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

// One block: counter (c0..c3), key (k0, k1) -> four 32-bit words.
FT_HOST_DEVICE Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                     uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, hi1;
    uint32_t lo0 = mulhilo32(kPhiloxM0, c0, &hi0);
    uint32_t lo1 = mulhilo32(kPhiloxM1, c2, &hi1);
    uint32_t n0 = hi1 ^ c1 ^ k0;
    uint32_t n2 = hi0 ^ c3 ^ k1;
    c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
    k0 += kPhiloxW0; k1 += kPhiloxW1;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// Dropout convention (identical on every device):
//   element e of a call with element offset `offset` (a multiple of 4) uses block
//   b = (offset + e) / 4, counter = (lo32(b), hi32(b), 0, 0), key = (lo32(seed), hi32(seed)),
//   and word (offset + e) % 4 of that block.  It is kept iff (word >> 8) >= threshold, with
//   threshold = ceil(p * 2^24) computed on the host, so P(keep) = 1 - p to 2^-24.
FT_HOST_DEVICE uint32_t dropout_threshold(double p) {
  double t = p * 16777216.0;
  uint32_t ti = static_cast<uint32_t>(t);
  if (static_cast<double>(ti) < t) ++ti;
  return ti;
}

FT_HOST_DEVICE bool dropout_keep(uint32_t word, uint32_t threshold) { return (word >> 8) >= threshold; }

}  // namespace fusetrain
