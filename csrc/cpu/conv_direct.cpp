// Direct ("implicit GEMM") convolution for stride 1 and one group (CPU, OpenMP over image groups).
//
// A group of images (one large image, or several small ones side by side along the width, each
// with its own zero borders) is copied once into a zero-padded stack of planes xpad (C, Hp, Wp)
// plus a zero tail. With stride 1, the input that kernel tap k = (c, kh, kw) reads for output
// position s' = oh*Wp + ow is xpad[off[k] + s'] with off[k] = c*Hp*Wp + kh*DH*Wp + kw*DW:
// consecutive positions read consecutive floats. So a register tile of mr output channels x nr
// positions (8 x 32 with AVX-512) takes its B operand straight from xpad (no im2col matrix,
// nothing bigger than a group in flight), and the result lands in (C, H, W) order with no layout
// move. Padding columns are computed and dropped (Wp/OW - 1 extra work: 6% at 32x32).
//
// Backward: dx is the same convolution of dy, padded by D*(K-1)-P, with the flipped and
// transposed weights; dW[oc, k] = sum_s' dT[s', oc] * xpad[off[k] + s'], where dT is dy
// transposed to position-major on the padded width (zeros in the padding columns): a register
// tile of taps x output channels accumulates outer products, one position at a time.
// The register tiles (tiles.h) are compiled for AVX-512, AVX2+FMA and portable C++; the widest
// the CPU supports is picked at run time.
// reference: torch.nn.functional.conv2d (cross-correlation, zero padding).
#include <algorithm>
#include <cstring>
#include <vector>

#include "fusetrain/common.h"
#include "fusetrain/conv.h"
#include "fusetrain/parallel.h"
#include "tiles.h"

namespace fusetrain {
namespace {

// ---------------------------------------------------------------- geometry and packing
// Widest tile of any instruction set: the zero tail of a padded image covers its overrun, so the
// saved-image size does not depend on which kernels this CPU runs.
constexpr int64_t kMaxNR = 32;
// Largest outer-product tile of any instruction set (rows x columns) and its row count.
constexpr int kMaxRows = 16, kMaxTile = 16 * 32;

// A stride-1 convolution seen on padded planes: `in` channels of (Hp, Wp), taps (KH, KW) with
// dilation (DH, DW), `out` channels of (OH, OW) with OH = Hp - DH*(KH-1), OW = Wp - DW*(KW-1).
struct Plan {
  int64_t in, out, KH, KW, DH, DW, Hp, Wp, OH, OW;
  int64_t plane, img;  // floats per padded plane; per padded image including the zero tail
  int64_t S, Spr;      // positions on the padded width (OH*Wp) and that rounded up to the tile width
  int64_t K, outp;     // taps in*KH*KW; out rounded up to the tile height
  std::vector<int64_t> off;
};

Plan make_plan(int64_t in, int64_t out, int64_t KH, int64_t KW, int64_t DH, int64_t DW, int64_t Hp,
               int64_t Wp) {
  const TileKernels& kn = tile_kernels();
  Plan p{in, out, KH, KW, DH, DW, Hp, Wp, Hp - DH * (KH - 1), Wp - DW * (KW - 1), Hp * Wp, 0, 0, 0,
         in * KH * KW, round_up(out, kn.mr), {}};
  p.S = p.OH * p.Wp;
  p.Spr = round_up(p.S, kn.nr);
  // The last tile of the last channel reads up to (KW-1)*DW + nr floats past the planes.
  p.img = round_up(in * p.plane + (KW - 1) * DW + 2 * kMaxNR, 16);
  p.off.resize(size_t(p.K));
  for (int64_t c = 0; c < in; ++c)
    for (int64_t kh = 0; kh < KH; ++kh)
      for (int64_t kw = 0; kw < KW; ++kw) p.off[size_t((c * KH + kh) * KW + kw)] = c * p.plane + kh * DH * Wp + kw * DW;
  return p;
}

// Weights (out, K) as mr-row panels, k-major inside a panel; rows past `out` are zero.
// flip: the input-gradient weights, a[c][(oc, kh, kw)] = w[oc][c][KH-1-kh][KW-1-kw].
std::vector<float> pack_weights(const float* w, const Plan& p, bool flip) {
  const int64_t mr = tile_kernels().mr, KK = p.KH * p.KW;
  std::vector<float> a(size_t(p.outp * p.K), 0.0f);
  for (int64_t r = 0; r < p.out; ++r)
    for (int64_t k = 0; k < p.K; ++k) {
      float v;
      if (!flip) {
        v = w[r * p.K + k];
      } else {  // r = input channel c of the forward conv, k = (oc, kh, kw)
        const int64_t oc = k / KK, t = k % KK;
        v = w[(oc * p.out + r) * KK + (KK - 1 - t)];
      }
      a[size_t(((r / mr) * p.K + k) * mr + r % mr)] = v;
    }
  return a;
}

// Images [n0, n0 + G) of src (N, C, H, W), side by side: dst (C, H + 2PH, G*(W + 2PW)), each image
// with its own zero borders (so no window reaches a neighbour), images past N all zero; then the
// zero tail up to img.
void pad_group(const float* src, int64_t n0, int64_t N, int64_t G, int64_t C, int64_t H, int64_t W, int64_t PH,
               int64_t PW, const Plan& p, float* dst) {
  const int64_t Wp = p.Wp, Wi = W + 2 * PW;
  for (int64_t c = 0; c < C; ++c) {
    float* pl = dst + c * p.plane;
    std::memset(pl, 0, sizeof(float) * size_t(PH * Wp));
    for (int64_t h = 0; h < H; ++h) {
      float* row = pl + (PH + h) * Wp;
      for (int64_t i = 0; i < G; ++i) {
        float* seg = row + i * Wi;
        if (n0 + i >= N) {
          std::fill(seg, seg + Wi, 0.0f);
          continue;
        }
        std::fill(seg, seg + PW, 0.0f);
        std::memcpy(seg + PW, src + (((n0 + i) * C + c) * H + h) * W, sizeof(float) * size_t(W));
        std::fill(seg + PW + W, seg + Wi, 0.0f);
      }
    }
    std::memset(pl + (PH + H) * Wp, 0, sizeof(float) * size_t((p.Hp - PH - H) * Wp));
  }
  std::memset(dst + C * p.plane, 0, sizeof(float) * size_t(p.img - C * p.plane));
}

// All output tiles of one padded group: ypad (outp, Spr).
void conv_group(const Plan& p, const float* apack, const float* xpad, float* ypad) {
  const TileKernels& kn = tile_kernels();
  for (int64_t s0 = 0; s0 < p.Spr; s0 += kn.nr)
    for (int64_t r0 = 0; r0 < p.outp; r0 += kn.mr)
      kn.tile(p.K, apack + r0 * p.K, xpad + s0, p.off.data(), ypad + r0 * p.Spr + s0, p.Spr);
}

// ypad (outp, Spr) of a group whose images sit Wi apart on the padded width -> y (N, out, rows,
// cols) for images [n0, min(N, n0 + G)), adding bias[c] when given.
void unpad_group(const Plan& p, const float* ypad, const float* bias, float* y, int64_t n0, int64_t N, int64_t G,
                 int64_t Wi, int64_t rows, int64_t cols) {
  for (int64_t i = 0; i < G && n0 + i < N; ++i)
    for (int64_t c = 0; c < p.out; ++c) {
      const float b = bias ? bias[c] : 0.0f;
      for (int64_t r = 0; r < rows; ++r) {
        const float* s = ypad + c * p.Spr + r * p.Wp + i * Wi;
        float* d = y + (((n0 + i) * p.out + c) * rows + r) * cols;
#pragma omp simd
        for (int64_t q = 0; q < cols; ++q) d[q] = s[q] + b;
      }
    }
}

// dy of images [n0, n0 + G) -> dT (OH*Wp, ldd): position-major on the forward's padded group width
// (image i at column offset i*Wi), so the weight-gradient kernel reads all output channels of a
// position as vectors. Padding columns and channels past OC stay 0, and so do the rows of images
// past N. Adds the per-channel sums of dy into sums when given.
void transpose_dy(const float* dy, int64_t n0, int64_t N, int64_t G, int64_t OC, int64_t OH, int64_t OW,
                  int64_t Wp, int64_t Wi, int64_t ldd, float* dT, double* sums) {
  for (int64_t i = 0; i < G; ++i) {
    if (n0 + i >= N) {  // a partial last group: clear what the previous group left there
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) std::memset(dT + (oh * Wp + i * Wi + ow) * ldd, 0, sizeof(float) * size_t(OC));
      continue;
    }
    for (int64_t oc = 0; oc < OC; ++oc) {
      double s = 0.0;
      for (int64_t oh = 0; oh < OH; ++oh) {
        const float* src = dy + (((n0 + i) * OC + oc) * OH + oh) * OW;
        float* dst = dT + (oh * Wp + i * Wi) * ldd + oc;
        for (int64_t ow = 0; ow < OW; ++ow) {
          dst[ow * ldd] = src[ow];
          s += double(src[ow]);
        }
      }
      if (sums) sums[oc] += s;
    }
  }
}

// Images per group: small images are convolved G at a time, side by side along the width, so the
// tile rows and the weight-gradient reductions stay long (up to kGroupPositions positions) where a
// lone 1-D signal of 40 would fill a 32-wide tile row only 62% of the way. The number of groups is
// then rounded up to a multiple of kGroupMultiple, so they share out evenly over threads. It
// depends on the sizes alone, so a forward and its backward agree on the saved layout.
constexpr int64_t kGroupPositions = 512, kGroupMultiple = 8;

int64_t images_per_group(int64_t N, int64_t OH, int64_t Wi) {
  const int64_t per = std::max<int64_t>(1, OH * Wi);
  const int64_t G = std::max<int64_t>(1, std::min<int64_t>(N, (kGroupPositions + per - 1) / per));
  if (G == 1) return 1;
  const int64_t groups = std::min(N, round_up((N + G - 1) / G, kGroupMultiple));
  return (N + groups - 1) / groups;
}

void check_direct(const Window2d& g) {
  check(g.SH == 1 && g.SW == 1, "the direct convolution needs stride 1");
  check(g.PH <= g.DH * (g.KH - 1) && g.PW <= g.DW * (g.KW - 1),
        "the direct convolution needs padding <= dilation * (kernel_size - 1)");
}

int64_t forward_group(int64_t N, const Window2d& g) { return images_per_group(N, g.OH, g.W + 2 * g.PW); }

Plan forward_plan(int64_t C, int64_t OC, int64_t G, const Window2d& g) {
  return make_plan(C, OC, g.KH, g.KW, g.DH, g.DW, g.H + 2 * g.PH, G * (g.W + 2 * g.PW));
}

}  // namespace

const char* conv2d_direct_isa() { return tile_kernels().isa; }

void conv2d_direct_saved_shape(int64_t N, int64_t C, const Window2d& g, int64_t& groups, int64_t& size) {
  check_direct(g);
  const int64_t G = forward_group(N, g);
  groups = (N + G - 1) / G;
  size = forward_plan(C, 1, G, g).img;
}

void conv2d_direct_forward(const float* x, const float* w, const float* bias, float* y, float* xpad,
                           int64_t N, int64_t C, int64_t OC, const Window2d& g) {
  check(N >= 0 && C >= 1 && OC >= 1, "direct convolution sizes must be positive");
  check_direct(g);
  const int64_t G = forward_group(N, g), groups = (N + G - 1) / G, Wi = g.W + 2 * g.PW;
  const Plan p = forward_plan(C, OC, G, g);
  const std::vector<float> apack = pack_weights(w, p, false);
  const int64_t OHW = g.OH * g.OW;
  const int team = groups > 1 ? threads_for(N * OC * p.K * OHW) : 1;
  const int64_t ysize = p.outp * p.Spr;
  const auto ypad = scratch<float>(int64_t(team) * ysize);  // one per worker; every tile is written
  parallel_tasks(groups, team, [&](int64_t t, int worker) {
    float* xp = xpad + t * p.img;
    float* yp = ypad.get() + worker * ysize;
    pad_group(x, t * G, N, G, C, g.H, g.W, g.PH, g.PW, p, xp);
    conv_group(p, apack.data(), xp, yp);
    unpad_group(p, yp, bias, y, t * G, N, G, Wi, g.OH, g.OW);
  });
}

void conv2d_direct_backward(const float* dy, const float* xpad, const float* w, float* dx,
                            float* dw, float* db, int64_t N, int64_t C, int64_t OC,
                            const Window2d& g) {
  check(N >= 0 && C >= 1 && OC >= 1, "direct convolution sizes must be positive");
  check_direct(g);
  const TileKernels& kn = tile_kernels();
  const int64_t G = forward_group(N, g), groups = (N + G - 1) / G, Wi = g.W + 2 * g.PW;
  const Plan fp = forward_plan(C, OC, G, g);
  const int64_t OHW = g.OH * g.OW, K = fp.K;
  // Input gradient: a stride-1 convolution of dy padded by D*(K-1) - P (same groups).
  const int64_t QH = g.DH * (g.KH - 1) - g.PH, QW = g.DW * (g.KW - 1) - g.PW, Wq = g.OW + 2 * QW;
  const Plan bp = make_plan(OC, C, g.KH, g.KW, g.DH, g.DW, g.OH + 2 * QH, G * Wq);
  const std::vector<float> apack = dx ? pack_weights(w, bp, true) : std::vector<float>();
  // Weight gradient: outer products over positions on the forward's padded width.
  const bool grads = dw || db;
  const int64_t OCr = round_up(OC, kn.dc), Kr = round_up(K, kn.dr), L = fp.S;
  // The weight and bias gradients sum over groups: the groups are cut into `parts` fixed runs of
  // consecutive groups (one per thread), each summed into its own partial, and the partials are
  // added in part order: the same bits for a given thread count.
  const int team = groups > 1 ? threads_for(N * OC * K * OHW) : 1;
  const int parts = int(std::min<int64_t>(groups, team));
  const int64_t per = (groups + parts - 1) / parts;
  const size_t part_size = size_t(OC * K + OC);
  std::vector<double> part(grads ? size_t(parts) * part_size : 0, 0.0);
  std::vector<float> zeros(grads ? size_t(L) : 0, 0.0f);
  // Per-worker scratch: pad_group writes all of dypad and the tiles all of gpad; dT's padding rows
  // must stay 0, so it is zeroed once.
  const int64_t dysize = dx ? bp.img : 0, gsize = dx ? bp.outp * bp.Spr : 0, dtsize = grads ? L * OCr : 0;
  const auto dypad = scratch<float>(team * dysize), gpad = scratch<float>(team * gsize);
  std::vector<float> dTall(size_t(team * dtsize), 0.0f);
  parallel_tasks(parts, team, [&](int64_t q, int worker) {
    float* dyp = dypad.get() + worker * dysize;
    float* gp = gpad.get() + worker * gsize;
    float* dT = dTall.data() + worker * dtsize;
    float tile[kMaxTile];
    const float* rows[kMaxRows];
    double* acc = grads ? part.data() + size_t(q) * part_size : nullptr;
    for (int64_t t = q * per; t < std::min(groups, (q + 1) * per); ++t) {
      const int64_t n0 = t * G;
      if (dx) {
        pad_group(dy, n0, N, G, OC, g.OH, g.OW, QH, QW, bp, dyp);
        conv_group(bp, apack.data(), dyp, gp);
        unpad_group(bp, gp, nullptr, dx, n0, N, G, Wq, g.H, g.W);
      }
      if (!grads) continue;
      transpose_dy(dy, n0, N, G, OC, g.OH, g.OW, fp.Wp, Wi, OCr, dT, db ? acc + OC * K : nullptr);
      if (!dw) continue;
      const float* xp = xpad + t * fp.img;
      for (int64_t k0 = 0; k0 < Kr; k0 += kn.dr) {
        for (int64_t i = 0; i < kn.dr; ++i) rows[i] = k0 + i < K ? xp + fp.off[size_t(k0 + i)] : zeros.data();
        for (int64_t oc0 = 0; oc0 < OCr; oc0 += kn.dc) {
          kn.outer(L, rows, dT + oc0, OCr, tile);
          // float per-group partials (L terms each) summed in double across groups
          for (int64_t i = 0; i < kn.dr && k0 + i < K; ++i)
            for (int64_t j = 0; j < kn.dc && oc0 + j < OC; ++j)
              acc[(oc0 + j) * K + k0 + i] += double(tile[size_t(i * kn.dc + j)]);
        }
      }
    }
  });
  if (!grads) return;
  for (int64_t i = 0; i < OC * K + OC; ++i) {
    double s = 0.0;
    for (int q = 0; q < parts; ++q) s += part[size_t(q) * part_size + size_t(i)];
    if (i < OC * K) {
      if (dw) dw[i] += float(s);
    } else if (db) {
      db[i - OC * K] += float(s);
    }
  }
}

}  // namespace fusetrain
