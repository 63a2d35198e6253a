// The register-tile kernels of the direct convolution and the GEMM, compiled once per instruction
// set from tile_kernels.inc, and the run-time choice between them (see tiles.h).
#include "tiles.h"

#include <cstring>

#include "cpu_isa.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FT_X86 1
#endif

namespace fusetrain {
namespace {

// Portable: an 8-float "vector" the compiler vectorizes for whatever the build targets.
namespace portable {
void transpose(const float* src, int64_t lds, int64_t K, int64_t cols, float* dst, int64_t ldd) {
  constexpr int64_t kBlk = 16;  // k in blocks, so the strided writes stay within a few lines
  for (int64_t kb = 0; kb < K; kb += kBlk) {
    const int64_t ke = kb + kBlk < K ? kb + kBlk : K;
    for (int64_t n = 0; n < cols; ++n)
      for (int64_t k = kb; k < ke; ++k) dst[k * ldd + n] = src[n * lds + k];
  }
}
struct VT {
  struct V { float f[8]; };
  static constexpr int W = 8;
  static V zero() { return V{}; }
  static V load(const float* p) { V v; std::memcpy(v.f, p, sizeof(v.f)); return v; }
  static V set1(float a) { V v; for (float& e : v.f) e = a; return v; }
  static V fma(V a, V b, V c) { for (int i = 0; i < W; ++i) c.f[i] += a.f[i] * b.f[i]; return c; }
  static void store(float* p, V v) { std::memcpy(p, v.f, sizeof(v.f)); }
};
#include "tile_kernels.inc"
}  // namespace portable

#ifdef FT_X86
// The vector type of an x86 instruction set, its width in floats and the intrinsics
// <prefix>_<operation>_ps the tiles need.
#define FT_X86_VECTOR(vec, width, prefix)                              \
  struct VT {                                                          \
    using V = vec;                                                     \
    static constexpr int W = width;                                    \
    static V zero() { return prefix##_setzero_ps(); }                  \
    static V load(const float* p) { return prefix##_loadu_ps(p); }     \
    static V set1(float a) { return prefix##_set1_ps(a); }             \
    static V fma(V a, V b, V c) { return prefix##_fmadd_ps(a, b, c); } \
    static void store(float* p, V v) { prefix##_storeu_ps(p, v); }     \
  };

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
FT_X86_VECTOR(__m256, 8, _mm256)
#include "tile_kernels.inc"
// 8x8 blocks transposed in registers (unpack, shuffle, lane permute), the rest element by element.
void transpose(const float* src, int64_t lds, int64_t K, int64_t cols, float* dst, int64_t ldd) {
  const int64_t K8 = K / 8 * 8, C8 = cols / 8 * 8;
  for (int64_t n = 0; n < C8; n += 8)
    for (int64_t k = 0; k < K8; k += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + (n + i) * lds + k);
      const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
      const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
      const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
      const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
      const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
      const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
      const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
      const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
      float* d = dst + k * ldd + n;
      _mm256_storeu_ps(d + 0 * ldd, _mm256_permute2f128_ps(u0, u4, 0x20));
      _mm256_storeu_ps(d + 1 * ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
      _mm256_storeu_ps(d + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
      _mm256_storeu_ps(d + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
      _mm256_storeu_ps(d + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
      _mm256_storeu_ps(d + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
      _mm256_storeu_ps(d + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
      _mm256_storeu_ps(d + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
    }
  for (int64_t n = 0; n < cols; ++n)  // the edges: columns past C8 in full, rows past K8 for the rest
    for (int64_t k = n < C8 ? K8 : 0; k < K; ++k) dst[k * ldd + n] = src[n * lds + k];
}
}  // namespace avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f")
namespace avx512 {
FT_X86_VECTOR(__m512, 16, _mm512)
#include "tile_kernels.inc"
}  // namespace avx512
#pragma GCC pop_options
#endif

}  // namespace

// Tile shapes sized so the accumulators fill the register file: AVX-512 16 (tile) and 24 (outer)
// of 32 registers; AVX2 12 of 16.
const TileKernels& tile_kernels() {
  // clang-format off
  static const TileKernels k = [] {
#ifdef FT_X86
    switch (cpu_isa()) {
      case CpuIsa::kAvx512:
        return TileKernels{"avx512", 8, 32, 12, 32, avx512::tile<8, 2, false>, avx512::tile<8, 2, true>,
                           avx512::outer<12, 2>, 24, 16, avx512::outer<24, 1>, 12, 8, avx2::outer<12, 1>, 64,
                           avx512::taps<4>, avx2::transpose,
                           avx512::fma_probe<16>, 16, 16};
      case CpuIsa::kAvx2:
        return TileKernels{"avx2", 6, 16, 6, 16, avx2::tile<6, 2, false>, avx2::tile<6, 2, true>,
                           avx2::outer<6, 2>, 6, 16, avx2::outer<6, 2>, 12, 8, avx2::outer<12, 1>, 32, avx2::taps<4>,
                           avx2::transpose,
                           avx2::fma_probe<12>, 12, 8};
      case CpuIsa::kPortable:
        break;
    }
#endif
    return TileKernels{"portable", 6, 16, 6, 16, portable::tile<6, 2, false>, portable::tile<6, 2, true>,
                       portable::outer<6, 2>, 6, 16, portable::outer<6, 2>, 6, 16, portable::outer<6, 2>, 32,
                       portable::taps<4>,
                       portable::transpose, portable::fma_probe<12>, 12, 8};
  }();
  // clang-format on
  return k;
}

}  // namespace fusetrain
