// Direct ("implicit GEMM") convolution for stride 1 and one group (CPU, OpenMP over images).
//
// Each image is copied once into a zero-padded stack of planes xpad (C, Hp, Wp) plus a zero tail.
// With stride 1, the input that kernel tap k = (c, kh, kw) reads for output position
// s' = oh*Wp + ow is xpad[off[k] + s'] with off[k] = c*Hp*Wp + kh*DH*Wp + kw*DW: consecutive
// positions read consecutive floats. So a register tile of 6 output channels x 16 positions takes
// its B operand straight from xpad (no im2col matrix, nothing bigger than an image in flight),
// and the result lands in (C, H, W) order with no layout move. The columns ow >= OW of the padded
// width are computed and dropped (Wp/OW - 1 extra work: 6% at 32x32, 12% at 16x16).
//
// Backward: dx is the same convolution of dy, padded by D*(K-1)-P, with the flipped and
// transposed weights; dW[oc, k] = sum_s' dyw[oc, s'] * xpad[off[k] + s'], where dyw is dy laid
// out on the padded width (zeros in the padding columns): dot products of contiguous rows.
// reference: torch.nn.functional.conv2d (cross-correlation, zero padding).
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "fusetrain/common.h"
#include "fusetrain/conv.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FT_X86 1
#endif

namespace fusetrain {
namespace {

constexpr int64_t kMR = 6;   // output channels per register tile
constexpr int64_t kNR = 16;  // output positions per register tile (two 8-float vectors)
constexpr int64_t kDR = 3;   // weight-gradient tile: kernel taps ...
constexpr int64_t kDC = 4;   // ... x output channels, dot products over positions in 8-float vectors

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// ---------------------------------------------------------------- micro-kernels
// c (6 rows, stride ldc) = a (K x 6, packed) . b, where b row k is the 16 floats at x + off[k].
using TileFn = void (*)(int64_t K, const float* a, const float* x, const int64_t* off, float* c,
                        int64_t ldc);
// out[i*4 + j] = sum_{s < L} x[i][s] * d[j][s]  (L a multiple of 8).
using DotFn = void (*)(int64_t L, const float* const* x, const float* const* d, float* out);

void tile_generic(int64_t K, const float* a, const float* x, const int64_t* off, float* c,
                  int64_t ldc) {
  float acc[kMR][kNR] = {};
  for (int64_t k = 0; k < K; ++k, a += kMR) {
    const float* b = x + off[k];
    for (int64_t r = 0; r < kMR; ++r)
      for (int64_t j = 0; j < kNR; ++j) acc[r][j] += a[r] * b[j];
  }
  for (int64_t r = 0; r < kMR; ++r) std::memcpy(c + r * ldc, acc[r], sizeof(acc[r]));
}

void dot_generic(int64_t L, const float* const* x, const float* const* d, float* out) {
  for (int64_t i = 0; i < kDR; ++i)
    for (int64_t j = 0; j < kDC; ++j) {
      float lanes[8] = {};
      for (int64_t s = 0; s < L; s += 8)
        for (int64_t l = 0; l < 8; ++l) lanes[l] += x[i][s + l] * d[j][s + l];
      float t = 0.0f;
      for (float v : lanes) t += v;
      out[i * kDC + j] = t;
    }
}

#ifdef FT_X86
// Scalar math: c[r][j] = sum_k a[k][r] * x[off[k] + j]; 12 accumulators hide the FMA latency.
__attribute__((target("avx2,fma"))) void tile_avx2(int64_t K, const float* a, const float* x,
                                                   const int64_t* off, float* c, int64_t ldc) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int64_t k = 0; k < K; ++k, a += kMR) {
    const float* b = x + off[k];
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
    __m256 v = _mm256_broadcast_ss(a + 0);
    c00 = _mm256_fmadd_ps(v, b0, c00);
    c01 = _mm256_fmadd_ps(v, b1, c01);
    v = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(v, b0, c10);
    c11 = _mm256_fmadd_ps(v, b1, c11);
    v = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(v, b0, c20);
    c21 = _mm256_fmadd_ps(v, b1, c21);
    v = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(v, b0, c30);
    c31 = _mm256_fmadd_ps(v, b1, c31);
    v = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(v, b0, c40);
    c41 = _mm256_fmadd_ps(v, b1, c41);
    v = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(v, b0, c50);
    c51 = _mm256_fmadd_ps(v, b1, c51);
  }
  _mm256_storeu_ps(c, c00);
  _mm256_storeu_ps(c + 8, c01);
  _mm256_storeu_ps(c + ldc, c10);
  _mm256_storeu_ps(c + ldc + 8, c11);
  _mm256_storeu_ps(c + 2 * ldc, c20);
  _mm256_storeu_ps(c + 2 * ldc + 8, c21);
  _mm256_storeu_ps(c + 3 * ldc, c30);
  _mm256_storeu_ps(c + 3 * ldc + 8, c31);
  _mm256_storeu_ps(c + 4 * ldc, c40);
  _mm256_storeu_ps(c + 4 * ldc + 8, c41);
  _mm256_storeu_ps(c + 5 * ldc, c50);
  _mm256_storeu_ps(c + 5 * ldc + 8, c51);
}

__attribute__((target("avx2,fma"))) inline float hsum_avx2(__m256 v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

// Scalar math: out[i][j] = sum_s x[i][s] * d[j][s], 8 lanes per accumulator, summed at the end.
__attribute__((target("avx2,fma"))) void dot_avx2(int64_t L, const float* const* x,
                                                  const float* const* d, float* out) {
  const float *x0 = x[0], *x1 = x[1], *x2 = x[2];
  const float *d0 = d[0], *d1 = d[1], *d2 = d[2], *d3 = d[3];
  __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00;
  __m256 a12 = a00, a13 = a00, a20 = a00, a21 = a00, a22 = a00, a23 = a00;
  for (int64_t s = 0; s < L; s += 8) {
    const __m256 u0 = _mm256_loadu_ps(x0 + s), u1 = _mm256_loadu_ps(x1 + s),
                 u2 = _mm256_loadu_ps(x2 + s);
    __m256 v = _mm256_loadu_ps(d0 + s);
    a00 = _mm256_fmadd_ps(u0, v, a00);
    a10 = _mm256_fmadd_ps(u1, v, a10);
    a20 = _mm256_fmadd_ps(u2, v, a20);
    v = _mm256_loadu_ps(d1 + s);
    a01 = _mm256_fmadd_ps(u0, v, a01);
    a11 = _mm256_fmadd_ps(u1, v, a11);
    a21 = _mm256_fmadd_ps(u2, v, a21);
    v = _mm256_loadu_ps(d2 + s);
    a02 = _mm256_fmadd_ps(u0, v, a02);
    a12 = _mm256_fmadd_ps(u1, v, a12);
    a22 = _mm256_fmadd_ps(u2, v, a22);
    v = _mm256_loadu_ps(d3 + s);
    a03 = _mm256_fmadd_ps(u0, v, a03);
    a13 = _mm256_fmadd_ps(u1, v, a13);
    a23 = _mm256_fmadd_ps(u2, v, a23);
  }
  const __m256 acc[12] = {a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23};
  for (int i = 0; i < 12; ++i) out[i] = hsum_avx2(acc[i]);
}
#endif

struct Kernels {
  TileFn tile;
  DotFn dot;
};

const Kernels& kernels() {
  static const Kernels k = [] {
#ifdef FT_X86
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Kernels{tile_avx2, dot_avx2};
#endif
    return Kernels{tile_generic, dot_generic};
  }();
  return k;
}

// ---------------------------------------------------------------- geometry and packing
// A stride-1 convolution seen on padded planes: `in` channels of (Hp, Wp), taps (KH, KW) with
// dilation (DH, DW), `out` channels of (OH, OW) with OH = Hp - DH*(KH-1), OW = Wp - DW*(KW-1).
struct Plan {
  int64_t in, out, KH, KW, DH, DW, Hp, Wp, OH, OW;
  int64_t plane, img;  // floats per padded plane; per padded image including the zero tail
  int64_t S, Spr;      // positions on the padded width (OH*Wp) and that rounded up to kNR
  int64_t K, outp;     // taps in*KH*KW; out rounded up to kMR
  std::vector<int64_t> off;
};

Plan make_plan(int64_t in, int64_t out, int64_t KH, int64_t KW, int64_t DH, int64_t DW, int64_t Hp,
               int64_t Wp) {
  Plan p{in, out, KH, KW, DH, DW, Hp, Wp, Hp - DH * (KH - 1), Wp - DW * (KW - 1), Hp * Wp, 0, 0, 0,
         in * KH * KW, round_up(out, kMR), {}};
  p.S = p.OH * p.Wp;
  p.Spr = round_up(p.S, kNR);
  // The last tile of the last channel reads up to (KW-1)*DW + kNR floats past the planes.
  p.img = round_up(in * p.plane + (KW - 1) * DW + 2 * kNR, 16);
  p.off.resize(size_t(p.K));
  for (int64_t c = 0; c < in; ++c)
    for (int64_t kh = 0; kh < KH; ++kh)
      for (int64_t kw = 0; kw < KW; ++kw) p.off[size_t((c * KH + kh) * KW + kw)] = c * p.plane + kh * DH * Wp + kw * DW;
  return p;
}

// Weights (out, K) as kMR-row panels, k-major inside a panel; rows past `out` are zero.
// flip: the input-gradient weights, a[c][(oc, kh, kw)] = w[oc][c][KH-1-kh][KW-1-kw].
std::vector<float> pack_weights(const float* w, const Plan& p, bool flip) {
  std::vector<float> a(size_t(p.outp * p.K), 0.0f);
  const int64_t KK = p.KH * p.KW;
  for (int64_t r = 0; r < p.out; ++r)
    for (int64_t k = 0; k < p.K; ++k) {
      float v;
      if (!flip) {
        v = w[r * p.K + k];
      } else {  // r = input channel c of the forward conv, k = (oc, kh, kw)
        const int64_t oc = k / KK, t = k % KK;
        v = w[(oc * p.out + r) * KK + (KK - 1 - t)];
      }
      a[size_t(((r / kMR) * p.K + k) * kMR + r % kMR)] = v;
    }
  return a;
}

// src (C, H, W) -> dst (C, H + 2PH, W + 2PW) with zero borders, then a zero tail up to img.
void pad_image(const float* src, int64_t C, int64_t H, int64_t W, int64_t PH, int64_t PW,
               const Plan& p, float* dst) {
  const int64_t Wp = p.Wp;
  for (int64_t c = 0; c < C; ++c) {
    float* pl = dst + c * p.plane;
    std::memset(pl, 0, sizeof(float) * size_t(PH * Wp));
    for (int64_t h = 0; h < H; ++h) {
      float* row = pl + (PH + h) * Wp;
      std::fill(row, row + PW, 0.0f);
      std::memcpy(row + PW, src + (c * H + h) * W, sizeof(float) * size_t(W));
      std::fill(row + PW + W, row + Wp, 0.0f);
    }
    std::memset(pl + (PH + H) * Wp, 0, sizeof(float) * size_t((p.Hp - PH - H) * Wp));
  }
  std::memset(dst + C * p.plane, 0, sizeof(float) * size_t(p.img - C * p.plane));
}

// All output tiles of one padded image: ypad (outp, Spr).
void conv_image(const Plan& p, const float* apack, const float* xpad, float* ypad) {
  const TileFn tile = kernels().tile;
  for (int64_t s0 = 0; s0 < p.Spr; s0 += kNR)
    for (int64_t r0 = 0; r0 < p.outp; r0 += kMR)
      tile(p.K, apack + r0 * p.K, xpad + s0, p.off.data(), ypad + r0 * p.Spr + s0, p.Spr);
}

// ypad (outp, Spr) on the padded width -> y (out, OH, OW), adding bias[c] when given.
void unpad_output(const Plan& p, const float* ypad, const float* bias, float* y) {
  for (int64_t c = 0; c < p.out; ++c) {
    const float b = bias ? bias[c] : 0.0f;
    for (int64_t oh = 0; oh < p.OH; ++oh) {
      const float* s = ypad + c * p.Spr + oh * p.Wp;
      float* d = y + (c * p.OH + oh) * p.OW;
#pragma omp simd
      for (int64_t ow = 0; ow < p.OW; ++ow) d[ow] = s[ow] + b;
    }
  }
}

void check_direct(const Window2d& g) {
  check(g.SH == 1 && g.SW == 1, "the direct convolution needs stride 1");
  check(g.PH <= g.DH * (g.KH - 1) && g.PW <= g.DW * (g.KW - 1),
        "the direct convolution needs padding <= dilation * (kernel_size - 1)");
}

Plan forward_plan(int64_t C, int64_t OC, const Window2d& g) {
  return make_plan(C, OC, g.KH, g.KW, g.DH, g.DW, g.H + 2 * g.PH, g.W + 2 * g.PW);
}

}  // namespace

int64_t conv2d_direct_image_size(int64_t C, const Window2d& g) {
  check_direct(g);
  return forward_plan(C, 1, g).img;
}

void conv2d_direct_forward(const float* x, const float* w, const float* bias, float* y, float* xpad,
                           int64_t N, int64_t C, int64_t OC, const Window2d& g) {
  check(N >= 0 && C >= 1 && OC >= 1, "direct convolution sizes must be positive");
  check_direct(g);
  const Plan p = forward_plan(C, OC, g);
  const std::vector<float> apack = pack_weights(w, p, false);
  const int64_t HW = g.H * g.W, OHW = g.OH * g.OW;
#pragma omp parallel if (N > 1 && N * OC * p.K * OHW > kParallelGrain)
  {
    std::vector<float> ypad(size_t(p.outp * p.Spr));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      float* xp = xpad + n * p.img;
      pad_image(x + n * C * HW, C, g.H, g.W, g.PH, g.PW, p, xp);
      conv_image(p, apack.data(), xp, ypad.data());
      unpad_output(p, ypad.data(), bias, y + n * OC * OHW);
    }
  }
}

void conv2d_direct_backward(const float* dy, const float* xpad, const float* w, float* dx,
                            float* dw, float* db, int64_t N, int64_t C, int64_t OC,
                            const Window2d& g) {
  check(N >= 0 && C >= 1 && OC >= 1, "direct convolution sizes must be positive");
  check_direct(g);
  const Plan fp = forward_plan(C, OC, g);
  const int64_t OHW = g.OH * g.OW, HW = g.H * g.W;
  // Input gradient: a stride-1 convolution of dy padded by D*(K-1) - P.
  const int64_t QH = g.DH * (g.KH - 1) - g.PH, QW = g.DW * (g.KW - 1) - g.PW;
  const Plan bp = make_plan(OC, C, g.KH, g.KW, g.DH, g.DW, g.OH + 2 * QH, g.OW + 2 * QW);
  const std::vector<float> apack = dx ? pack_weights(w, bp, true) : std::vector<float>();
  // Weight gradient: dot products over positions on the forward's padded width.
  const bool grads = dw || db;
  const int64_t L = round_up(fp.S, 8), OC4 = round_up(OC, kDC), K = fp.K;
  const int nt = omp_get_max_threads();
  std::vector<double> part(grads ? size_t(nt) * size_t(OC * K + OC) : 0, 0.0);
  std::vector<float> zeros(grads ? size_t(L) : 0, 0.0f);
  const DotFn dot = kernels().dot;
#pragma omp parallel if (N > 1 && N * OC * K * OHW > kParallelGrain)
  {
    std::vector<float> dypad(dx ? size_t(bp.img) : 0), gpad(dx ? size_t(bp.outp * bp.Spr) : 0);
    std::vector<float> dyw(grads ? size_t(OC4 * L) : 0, 0.0f);
    double* acc = grads ? part.data() + size_t(omp_get_thread_num()) * size_t(OC * K + OC) : nullptr;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const float* dyn = dy + n * OC * OHW;
      if (dx) {
        pad_image(dyn, OC, g.OH, g.OW, QH, QW, bp, dypad.data());
        conv_image(bp, apack.data(), dypad.data(), gpad.data());
        unpad_output(bp, gpad.data(), nullptr, dx + n * C * HW);
      }
      if (!grads) continue;
      for (int64_t oc = 0; oc < OC; ++oc) {  // dy on the padded width; padding columns stay 0
        double s = 0.0;
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          const float* src = dyn + (oc * g.OH + oh) * g.OW;
          std::memcpy(dyw.data() + oc * L + oh * fp.Wp, src, sizeof(float) * size_t(g.OW));
          if (db) {
#pragma omp simd reduction(+ : s)
            for (int64_t ow = 0; ow < g.OW; ++ow) s += double(src[ow]);
          }
        }
        acc[OC * K + oc] += s;
      }
      if (!dw) continue;
      const float* xp = xpad + n * fp.img;
      for (int64_t k0 = 0; k0 < K; k0 += kDR) {
        const float* xr[kDR];
        for (int64_t i = 0; i < kDR; ++i) xr[i] = k0 + i < K ? xp + fp.off[size_t(k0 + i)] : zeros.data();
        for (int64_t oc0 = 0; oc0 < OC4; oc0 += kDC) {
          const float* dr[kDC];
          for (int64_t j = 0; j < kDC; ++j) dr[j] = dyw.data() + (oc0 + j) * L;
          float out[kDR * kDC];
          dot(L, xr, dr, out);
          for (int64_t i = 0; i < kDR && k0 + i < K; ++i)
            for (int64_t j = 0; j < kDC && oc0 + j < OC; ++j) acc[(oc0 + j) * K + k0 + i] += double(out[i * kDC + j]);
        }
      }
    }
  }
  if (!grads) return;
  // Per-thread partials combined in thread order: the same result for the same thread count.
  const size_t stride = size_t(OC * K + OC);
  for (int64_t i = 0; i < OC * K + OC; ++i) {
    double s = 0.0;
    for (int t = 0; t < nt; ++t) s += part[size_t(t) * stride + size_t(i)];
    if (i < OC * K) {
      if (dw) dw[i] += float(s);
    } else if (db) {
      db[i - OC * K] += float(s);
    }
  }
}

}  // namespace fusetrain
