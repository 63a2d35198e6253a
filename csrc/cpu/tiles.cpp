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
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
struct VT {
  using V = __m256;
  static constexpr int W = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V set1(float a) { return _mm256_set1_ps(a); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
};
#include "tile_kernels.inc"
}  // namespace avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f")
namespace avx512 {
struct VT {
  using V = __m512;
  static constexpr int W = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V set1(float a) { return _mm512_set1_ps(a); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
};
#include "tile_kernels.inc"
}  // namespace avx512
#pragma GCC pop_options
#endif

}  // namespace

// Tile shapes sized so the accumulators fill the register file: AVX-512 16 (tile) and 24 (outer)
// of 32 registers; AVX2 12 of 16.
const TileKernels& tile_kernels() {
  static const TileKernels k = [] {
#ifdef FT_X86
    switch (cpu_isa()) {
      case CpuIsa::kAvx512:
        return TileKernels{"avx512",
                           8,
                           32,
                           12,
                           32,
                           avx512::tile<8, 2, false>,
                           avx512::tile<8, 2, true>,
                           avx512::outer<12, 2>,
                           24,
                           16,
                           avx512::outer<24, 1>,
                           64,
                           avx512::taps<4>};
      case CpuIsa::kAvx2:
        return TileKernels{"avx2",
                           6,
                           16,
                           6,
                           16,
                           avx2::tile<6, 2, false>,
                           avx2::tile<6, 2, true>,
                           avx2::outer<6, 2>,
                           6,
                           16,
                           avx2::outer<6, 2>,
                           32,
                           avx2::taps<4>};
      case CpuIsa::kPortable:
        break;
    }
#endif
    return TileKernels{"portable",
                       6,
                       16,
                       6,
                       16,
                       portable::tile<6, 2, false>,
                       portable::tile<6, 2, true>,
                       portable::outer<6, 2>,
                       6,
                       16,
                       portable::outer<6, 2>,
                       32,
                       portable::taps<4>};
  }();
  return k;
}

}  // namespace fusetrain
