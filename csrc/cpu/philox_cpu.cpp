// Philox4x32-10 batches hand-vectorized for AVX-512 (16 blocks per register, two registers in flight),
// producing exactly the words of philox_batch_portable, and the run-time choice between the two.
#include "cpu_isa.h"
#include "philox_cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FT_X86 1
#endif

namespace fusetrain {
namespace {

#ifdef FT_X86
#pragma GCC push_options
#pragma GCC target("avx512f")
// GCC 12's own shift intrinsics start from _mm512_undefined_*, which -Wuninitialized reports.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"

// Lane l holds block 4*(l % 4) + l/4 of its 16: after the two unpack steps below, register j's
// 128-bit lane k is then block 4j + k's four words, so the four registers store the 16 blocks in
// stream order with no further shuffle.
inline __m512i lane_blocks() { return _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15); }

struct Ctr {
  __m512i c0, c1, c2, c3;
};

inline Ctr counters(uint64_t first) {  // the 64-bit block numbers first + lane_blocks()[l]
  const __m512i lo = _mm512_add_epi32(_mm512_set1_epi32(int(uint32_t(first))), lane_blocks());
  const __mmask16 carry = _mm512_cmplt_epu32_mask(lo, _mm512_set1_epi32(int(uint32_t(first))));
  const __m512i hi = _mm512_mask_add_epi32(_mm512_set1_epi32(int(uint32_t(first >> 32))), carry,
                                           _mm512_set1_epi32(int(uint32_t(first >> 32))), _mm512_set1_epi32(1));
  return {lo, hi, _mm512_setzero_si512(), _mm512_setzero_si512()};
}

// (lo, hi) of m * v per 32-bit lane.
inline void mulhilo(__m512i m, __m512i v, __m512i& lo, __m512i& hi) {
  const __m512i even = _mm512_mul_epu32(v, m);                         // lanes 0, 2, ...: 64-bit products
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(v, 32), m);   // lanes 1, 3, ...
  lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
}

// Scalar math (philox4x32_10 in fusetrain/philox.h), per lane:
//   (hi0, lo0) = M0*c0; (hi1, lo1) = M1*c2; c = (hi1^c1^k0, lo1, hi0^c3^k1, lo0); k += (W0, W1)
inline void round(Ctr& c, __m512i k0, __m512i k1) {
  const __m512i m0 = _mm512_set1_epi32(int(kPhiloxM0)), m1 = _mm512_set1_epi32(int(kPhiloxM1));
  __m512i lo0, hi0, lo1, hi1;
  mulhilo(m0, c.c0, lo0, hi0);
  mulhilo(m1, c.c2, lo1, hi1);
  c.c0 = _mm512_ternarylogic_epi32(hi1, c.c1, k0, 0x96);  // three-way xor
  c.c2 = _mm512_ternarylogic_epi32(hi0, c.c3, k1, 0x96);
  c.c1 = lo1;
  c.c3 = lo0;
}

inline void store(const Ctr& c, uint32_t* out) {
  const __m512i ab_lo = _mm512_unpacklo_epi32(c.c0, c.c1), ab_hi = _mm512_unpackhi_epi32(c.c0, c.c1);
  const __m512i cd_lo = _mm512_unpacklo_epi32(c.c2, c.c3), cd_hi = _mm512_unpackhi_epi32(c.c2, c.c3);
  _mm512_storeu_si512(out, _mm512_unpacklo_epi64(ab_lo, cd_lo));
  _mm512_storeu_si512(out + 16, _mm512_unpackhi_epi64(ab_lo, cd_lo));
  _mm512_storeu_si512(out + 32, _mm512_unpacklo_epi64(ab_hi, cd_hi));
  _mm512_storeu_si512(out + 48, _mm512_unpackhi_epi64(ab_hi, cd_hi));
}

void philox_batch_avx512(uint64_t b0, uint32_t k0, uint32_t k1, uint32_t* out) {
  static_assert(kPhiloxLanes == 32, "two registers of 16 blocks");
  Ctr a = counters(b0), b = counters(b0 + 16);
  for (int r = 0; r < 10; ++r) {
    const __m512i key0 = _mm512_set1_epi32(int(k0)), key1 = _mm512_set1_epi32(int(k1));
    round(a, key0, key1);
    round(b, key0, key1);
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  store(a, out);
  store(b, out + 64);
}

#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

}  // namespace

PhiloxBatchFn philox_batch_fn() {
#ifdef FT_X86
  if (cpu_isa() == CpuIsa::kAvx512) return &philox_batch_avx512;
#endif
  return &philox_batch_portable;
}

}  // namespace fusetrain
