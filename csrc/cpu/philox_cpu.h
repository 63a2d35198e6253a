// Batched Philox for the CPU kernels: 32 blocks at a time (2.5x faster than 8 in our measurements)
// in structure-of-arrays form so the compiler turns the 32x32->64 multiplies into vector
// instructions (vpmuludq on AVX2); on AVX-512 CPUs a hand-vectorized batch (philox_cpu.cpp) makes
// the same words about twice as fast.
#pragma once
#include <cstdint>
#include <cstring>

#include "fusetrain/parallel.h"
#include "fusetrain/philox.h"

namespace fusetrain {

constexpr int kPhiloxLanes = 32;  // blocks per batch = 128 words; wide enough to hide the multiply latency

// Words of blocks [b0, b0 + 32) of key (k0, k1), in stream order (block-major, word-minor).
inline void philox_batch_portable(uint64_t b0, uint32_t k0, uint32_t k1, uint32_t* __restrict out) {
  uint32_t c0[kPhiloxLanes], c1[kPhiloxLanes], c2[kPhiloxLanes], c3[kPhiloxLanes];
  for (int j = 0; j < kPhiloxLanes; ++j) {
    uint64_t b = b0 + uint64_t(j);
    c0[j] = uint32_t(b);
    c1[j] = uint32_t(b >> 32);
    c2[j] = 0;
    c3[j] = 0;
  }
  for (int r = 0; r < 10; ++r) {
#pragma omp simd
    for (int j = 0; j < kPhiloxLanes; ++j) {
      uint64_t p0 = uint64_t(kPhiloxM0) * c0[j];
      uint64_t p1 = uint64_t(kPhiloxM1) * c2[j];
      uint32_t n0 = uint32_t(p1 >> 32) ^ c1[j] ^ k0;
      uint32_t n2 = uint32_t(p0 >> 32) ^ c3[j] ^ k1;
      c1[j] = uint32_t(p1);
      c3[j] = uint32_t(p0);
      c0[j] = n0;
      c2[j] = n2;
    }
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  for (int j = 0; j < kPhiloxLanes; ++j) {
    out[4 * j + 0] = c0[j];
    out[4 * j + 1] = c1[j];
    out[4 * j + 2] = c2[j];
    out[4 * j + 3] = c3[j];
  }
}

using PhiloxBatchFn = void (*)(uint64_t b0, uint32_t k0, uint32_t k1, uint32_t* out);
// The fastest batch for cpu_isa() (cpu_isa.h): AVX-512, else the portable one.
PhiloxBatchFn philox_batch_fn();

// out[0, count) = words of stream elements [first, first + count) for (seed, offset).
inline void philox_words(uint32_t* __restrict out, uint64_t first, int64_t count, uint64_t seed,
                         uint64_t offset) {
  const uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  uint64_t e = offset + first;
  uint64_t block = e / 4;
  int64_t skip = int64_t(e % 4);
  alignas(64) uint32_t tmp[4 * kPhiloxLanes];
  const PhiloxBatchFn batch = philox_batch_fn();
  int64_t done = 0;
  while (done < count) {
    batch(block, k0, k1, tmp);
    int64_t avail = 4 * kPhiloxLanes - skip;
    int64_t take = count - done < avail ? count - done : avail;
    std::memcpy(out + done, tmp + skip, size_t(take) * sizeof(uint32_t));
    done += take;
    skip = 0;
    block += kPhiloxLanes;
  }
}

}  // namespace fusetrain

namespace fusetrain {

// Elements per mask tile: a multiple of 128 (one Philox batch) and of 8 (one mask byte), small
// enough that the tile's words stay in L1.
constexpr int64_t kMaskTile = 1024;

// Calls fn(e0, e1, words) for consecutive tiles [e0, e1) of [0, n), in parallel; words holds the
// tile's Philox words (words[i] belongs to element e0 + i) when with_words, else is null.
template <class Fn>
void for_each_mask_tile(int64_t n, bool with_words, uint64_t seed, uint64_t offset, Fn&& fn) {
  const int64_t tiles = (n + kMaskTile - 1) / kMaskTile;
  parallel_chunks(tiles, n, [&](int64_t t0, int64_t t1) {
    alignas(64) uint32_t words[kMaskTile];
    for (int64_t t = t0; t < t1; ++t) {
      int64_t e0 = t * kMaskTile, e1 = e0 + kMaskTile < n ? e0 + kMaskTile : n;
      if (with_words) philox_words(words, uint64_t(e0), e1 - e0, seed, offset);
      fn(e0, e1, with_words ? static_cast<const uint32_t*>(words) : nullptr);
    }
  });
}

}  // namespace fusetrain
