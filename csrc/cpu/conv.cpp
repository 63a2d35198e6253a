// Convolution on the CPU for every stride, padding, dilation and group count, with no column
// matrix and no BLAS: the register tiles of tiles.h read the input where it lies.
//
// The layout ("pack"). A pack is B images side by side along the width, zero-padded so that no
// window reaches a neighbour (an image's right padding is the next one's left padding: images sit
// W + PW apart, not W + 2*PW), copied once into planes split by stride phase: padded
// pixel (r, col) of channel c goes to phase (r % SH, col % SW), row r / SH, column col / SW. The
// input that tap (c, kh, kw) reads for output position s' = oh*Wq + q is then
//   pack[off[c, kh, kw] + s'],  off = (c*U + phase)*plane + (kh*DH / SH)*Wq + (kw*DW / SW)
// (U: phases some tap reads; a 1x1 stride-2 convolution reads one of four), so consecutive output
// positions read consecutive floats, for any stride. Image i's outputs are columns
// q = i*Wiq + ow (ow < OW) of each output row; the other columns are computed and dropped.
//
// Forward: a register tile of mr output channels x nr positions (8 x 32 with AVX-512) takes its
// B operand straight from the pack; one conv group at a time (its channels are a contiguous run).
// Weight gradient: dW[oc, k] = sum_s' dT[s', oc] * pack[off[k] + s'], dT being dy transposed to
// position-major on the pack's grid: outer-product tiles, no horizontal sums.
// Input gradient, stride 1: the convolution of dy (padded by D*(K-1) - P) with the flipped,
// transposed weights, on the same tiles. Otherwise: gcol = W^T dy on the tiles, then each tap's
// row of gcol is added back where the forward read it (the adjoint of the gather above), and the
// pack is unpacked into dx.
// Depthwise (groups == C): per channel, each tap is one multiply-add over the whole run of
// positions of a pack; backward the same runs scattered and dotted.
// reference: torch.nn.functional.conv2d (cross-correlation, zero padding).
#include "fusetrain/conv.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "fusetrain/common.h"
#include "fusetrain/epilogue.h"
#include "fusetrain/parallel.h"
#include "tiles.h"

namespace fusetrain {
namespace {

// Widest tile of any instruction set: the zero tail of a pack covers its overrun, so the saved
// size does not depend on which kernels this CPU runs.
constexpr int64_t kMaxNR = 32;
// Largest outer-product tile of any instruction set (rows x columns) and its row count.
constexpr int kMaxRows = 24, kMaxTile = 24 * 32;

// ---------------------------------------------------------------- the pack

// Where the images of a pack sit: the phase grid, the phases in use and each tap's offset.
struct Pack {
  int64_t C, H, W;      // source channels and image size
  int64_t SH, SW;       // stride (phase counts)
  int64_t PH, PW;       // zero padding of each image
  int64_t B;            // images per pack
  int64_t Wi;           // distance between images on the full grid (W + PW rounded up to SW)
  int64_t Hq, Wq, Wiq;  // phase-grid rows, columns (all images), columns per image
  int64_t U;            // phases in use
  int slot[64];         // phase (ph*SW + pw) -> its plane slot, or -1 when no tap reads it
  int64_t plane, img;   // floats per phase plane; per pack including the zero tail
};

// Taps of one conv group over a pack: off[(c, kh, kw)] relative to the group's first channel.
struct Taps {
  int64_t S, Spr;  // positions OH*Wq, and rounded up to the tile width
  std::vector<int64_t> off;
};

Pack make_pack(int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PH, int64_t PW,
               int64_t DH, int64_t DW, int64_t OH, int64_t B) {
  check(SH * SW <= 64, "stride products above 64 are not supported");
  Pack p{};
  p.C = C, p.H = H, p.W = W, p.SH = SH, p.SW = SW, p.PH = PH, p.PW = PW, p.B = B;
  p.Wi = round_up(W + PW, SW);
  p.Wiq = p.Wi / SW;
  p.Wq = round_up(B * p.Wi + PW, SW) / SW;  // the last image's right padding after the images
  // Rows: the deepest tap of the last output row must lie inside the grid.
  p.Hq = std::max(round_up(H + 2 * PH, SH) / SH, OH + (KH - 1) * DH / SH);
  std::fill(p.slot, p.slot + 64, -1);
  for (int64_t kh = 0; kh < KH; ++kh)
    for (int64_t kw = 0; kw < KW; ++kw) p.slot[((kh * DH) % SH) * SW + (kw * DW) % SW] = 0;
  p.U = 0;
  for (int i = 0; i < SH * SW; ++i)
    if (p.slot[i] == 0) p.slot[i] = int(p.U++);
  p.plane = p.Hq * p.Wq;
  // The last tile of the last channel reads up to (KW-1)*DW/SW + nr floats past the planes.
  p.img = round_up(C * p.U * p.plane + (KW - 1) * DW / SW + 2 * kMaxNR, 16);
  return p;
}

Taps make_taps(const Pack& p, int64_t Cg, int64_t KH, int64_t KW, int64_t DH, int64_t DW, int64_t OH) {
  Taps t{OH * p.Wq, round_up(OH * p.Wq, tile_kernels().nr), {}};
  t.off.resize(size_t(Cg * KH * KW));
  for (int64_t c = 0; c < Cg; ++c)
    for (int64_t kh = 0; kh < KH; ++kh)
      for (int64_t kw = 0; kw < KW; ++kw) {
        const int64_t ph = (kh * DH) % p.SH, pw = (kw * DW) % p.SW;
        t.off[size_t((c * KH + kh) * KW + kw)] =
            (c * p.U + p.slot[ph * p.SW + pw]) * p.plane + (kh * DH / p.SH) * p.Wq + (kw * DW / p.SW);
      }
  return t;
}

// Images [n0, n0 + B) of src (N, C, H, W) into the pack at dst (images past N are zeros), then
// the zero tail. Rows are short (a 32-pixel row is 17 floats per phase at stride 2), so everything
// that does not depend on the row is worked out once.
void pack_images(const float* src, int64_t n0, int64_t N, const Pack& p, float* dst) {
  const int64_t SH = p.SH, SW = p.SW, Wiq = p.Wiq, nimg = std::min(p.B, N - n0);
  // Phase column qw of phase pw holds padded column qw*SW + pw, i.e. source column qw*SW + pw - PW:
  // data in [lo, hi), zeros around it.
  int64_t lo[64], hi[64];
  for (int64_t pw = 0; pw < SW; ++pw) {
    lo[pw] = std::min(Wiq, (std::max<int64_t>(p.PW - pw, 0) + SW - 1) / SW);
    hi[pw] = std::max(lo[pw], std::min(Wiq, (p.W + p.PW - pw + SW - 1) / SW));
  }
  for (int64_t c = 0; c < p.C; ++c)
    for (int64_t ph = 0; ph < SH; ++ph)
      for (int64_t pw = 0; pw < SW; ++pw) {
        const int u = p.slot[ph * SW + pw];
        if (u < 0) continue;
        float* pl = dst + (c * p.U + u) * p.plane;
        const int64_t l = lo[pw], h1 = hi[pw];
        for (int64_t qh = 0; qh < p.Hq; ++qh) {
          float* row = pl + qh * p.Wq;
          const int64_t h = qh * SH + ph - p.PH;
          if (h < 0 || h >= p.H) {
            std::memset(row, 0, sizeof(float) * size_t(p.Wq));
            continue;
          }
          for (int64_t i = 0; i < nimg; ++i) {
            float* seg = row + i * Wiq;
            const float* sp = src + (((n0 + i) * p.C + c) * p.H + h) * p.W + pw - p.PW;
            for (int64_t q = 0; q < l; ++q) seg[q] = 0.0f;
            if (SW == 1) {
              std::memcpy(seg + l, sp + l, sizeof(float) * size_t(h1 - l));
            } else if (SW == 2) {  // a constant stride vectorizes (two loads and a permute per vector)
#pragma omp simd
              for (int64_t q = l; q < h1; ++q) seg[q] = sp[q * 2];
            } else {
              for (int64_t q = l; q < h1; ++q) seg[q] = sp[q * SW];
            }
            for (int64_t q = h1; q < Wiq; ++q) seg[q] = 0.0f;
          }
          std::memset(row + nimg * Wiq, 0, sizeof(float) * size_t(p.Wq - nimg * Wiq));
        }
      }
  const int64_t used = p.C * p.U * p.plane;
  std::memset(dst + used, 0, sizeof(float) * size_t(p.img - used));
}

// The adjoint of pack_images for images [n0, min(N, n0 + B)): image n's channel c of dst, at
// dst + n*img_stride + c*H*W, receives each pixel's pack value (0 for pixels no tap reads).
void unpack_images(const float* pk, int64_t n0, int64_t N, const Pack& p, float* dst, int64_t img_stride) {
  for (int64_t i = 0; i < p.B && n0 + i < N; ++i)
    for (int64_t c = 0; c < p.C; ++c)
      for (int64_t h = 0; h < p.H; ++h) {
        float* d = dst + (n0 + i) * img_stride + (c * p.H + h) * p.W;
        const int64_t r = h + p.PH;
        for (int64_t pw = 0; pw < p.SW; ++pw) {
          const int u = p.slot[(r % p.SH) * p.SW + pw];
          // Source columns w with (w + PW) % SW == pw: w = pw - PW + SW*j.
          int64_t w0 = pw - p.PW;
          while (w0 < 0) w0 += p.SW;
          if (u < 0) {
            for (int64_t w = w0; w < p.W; w += p.SW) d[w] = 0.0f;
            continue;
          }
          const float* s = pk + (c * p.U + u) * p.plane + (r / p.SH) * p.Wq + i * p.Wiq;
          for (int64_t w = w0; w < p.W; w += p.SW) d[w] = s[(w + p.PW) / p.SW];
        }
      }
}

// Weights of one conv group (rows x K) as mr-row panels, k-major inside a panel, into a (of
// packed_weights_size floats); rows past `rows` are zero. flip: the stride-1 input-gradient weights of a group whose
// forward had `rows` input channels: a[c][(oc, kh, kw)] = w[oc][c][KH-1-kh][KW-1-kw], KK = KH*KW.
int64_t packed_weights_size(int64_t rows, int64_t K) { return round_up(rows, tile_kernels().mr) * K; }

void pack_weights(const float* w, int64_t rows, int64_t K, int64_t KK, bool flip, float* a) {
  const int64_t mr = tile_kernels().mr;
  std::memset(a, 0, sizeof(float) * size_t(packed_weights_size(rows, K)));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < K; ++k) {
      float v;
      if (!flip) {
        v = w[r * K + k];
      } else {  // r = input channel c of the forward conv, k = (oc, kh, kw)
        const int64_t oc = k / KK, t = k % KK;
        v = w[(oc * rows + r) * KK + (KK - 1 - t)];
      }
      a[((r / mr) * K + k) * mr + r % mr] = v;
    }
}

// W^T of one conv group as panels: rows k = (c, kh, kw) (K of them), inner dimension oc (OCg).
int64_t packed_weights_t_size(int64_t OCg, int64_t K) { return round_up(K, tile_kernels().mr) * OCg; }

void pack_weights_t(const float* w, int64_t OCg, int64_t K, float* a) {
  const int64_t mr = tile_kernels().mr;
  std::memset(a, 0, sizeof(float) * size_t(packed_weights_t_size(OCg, K)));
  for (int64_t k = 0; k < K; ++k)
    for (int64_t oc = 0; oc < OCg; ++oc) a[((k / mr) * OCg + oc) * mr + k % mr] = w[oc * K + k];
}

// c (rows_p x Spr, rows_p a multiple of mr) = A (panels, inner K) . B, B's k-th row at x + off[k].
// (Blocking K so a tile column's input stays in L1 was measured slower on Zen 4: 2-10%.)
void tile_gemm(int64_t rows_p, int64_t K, const float* a, const float* x, const int64_t* off, int64_t Spr, float* c) {
  const TileKernels& kn = tile_kernels();
  for (int64_t s0 = 0; s0 < Spr; s0 += kn.nr)
    for (int64_t r0 = 0; r0 < rows_p; r0 += kn.mr) kn.tile(K, a + r0 * K, x + s0, off, c + r0 * Spr + s0, Spr);
}

// act(alpha*v + beta) over one output row; alpha null means 1.
template <Act A>
void epilogue_row(const float* __restrict s, float* __restrict d, int64_t n, float alpha, float beta, float slope) {
#pragma omp simd
  for (int64_t q = 0; q < n; ++q) d[q] = act_fwd<A>(s[q] * alpha + beta, slope);
}

// Per-channel output epilogue: alpha (null: 1), beta (null: 0), activation.
struct OutEpi {
  const float* alpha;
  const float* beta;
  Act act;
  float slope;
};

// Rows of ypad (row stride Spr) on the pack grid -> `out` channels of y for the pack's images,
// through the epilogue: image n's channel c at y + n*ystride + c*OH*OW. rowmap(c) is channel c's
// row in ypad.
template <class RowMap>
void unpad_output(const float* ypad, int64_t Spr, int64_t Wq, int64_t Wiq, const OutEpi& e, float* y, int64_t ystride,
                  int64_t n0, int64_t N, int64_t B, int64_t out, int64_t OH, int64_t OW, RowMap rowmap) {
  with_act(e.act, [&](auto A) {
    for (int64_t i = 0; i < B && n0 + i < N; ++i)
      for (int64_t c = 0; c < out; ++c) {
        const float a = e.alpha ? e.alpha[c] : 1.0f, b = e.beta ? e.beta[c] : 0.0f;
        for (int64_t r = 0; r < OH; ++r)
          epilogue_row<decltype(A)::value>(ypad + rowmap(c) * Spr + r * Wq + i * Wiq,
                                           y + (n0 + i) * ystride + (c * OH + r) * OW, OW, a, b, e.slope);
      }
  });
}

// `channels` channels of dy for the pack's images -> channel-major on the pack grid: dq (channels,
// ld), zero in the columns no output owns, in the rows of images past N, and past the last
// position. Image n's channel oc starts at dy + n*img_stride + oc*OH*OW.
void dy_channel_major(const float* dy, int64_t img_stride, int64_t n0, int64_t N, int64_t B, int64_t channels,
                      int64_t OH, int64_t OW, int64_t Wq, int64_t Wiq, int64_t ld, float* dq) {
  for (int64_t oc = 0; oc < channels; ++oc) {
    float* d = dq + oc * ld;
    std::memset(d, 0, sizeof(float) * size_t(ld));
    for (int64_t i = 0; i < B && n0 + i < N; ++i)
      for (int64_t oh = 0; oh < OH; ++oh)
        std::memcpy(d + oh * Wq + i * Wiq, dy + (n0 + i) * img_stride + (oc * OH + oh) * OW,
                    sizeof(float) * size_t(OW));
  }
}

// The same channels -> dT (OH*Wq, ldd): position-major on the pack grid, so the weight-gradient
// kernel reads all output channels of a position as vectors (each output row of each image is a
// channels x OW block transposed in registers). Columns no output owns and channels past
// `channels` stay 0 (dT starts zeroed and only these entries are ever written); the rows of images
// past N are cleared. Adds the per-channel sums of dy into sums when given.
void dy_position_major(const float* dy, int64_t img_stride, int64_t n0, int64_t N, int64_t B, int64_t channels,
                       int64_t OH, int64_t OW, int64_t Wq, int64_t Wiq, int64_t ldd, float* dT, double* sums) {
  const TileKernels& kn = tile_kernels();
  const int64_t OHW = OH * OW;
  for (int64_t i = 0; i < B; ++i) {
    if (n0 + i >= N) {  // a partial last pack: clear what the previous pack left there
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow)
          std::memset(dT + (oh * Wq + i * Wiq + ow) * ldd, 0, sizeof(float) * size_t(channels));
      continue;
    }
    const float* img = dy + (n0 + i) * img_stride;
    for (int64_t oh = 0; oh < OH; ++oh)
      kn.transpose(img + oh * OW, OHW, OW, channels, dT + (oh * Wq + i * Wiq) * ldd, ldd);
    if (!sums) continue;
    for (int64_t oc = 0; oc < channels; ++oc) {
      const float* src = img + oc * OHW;
      double s = 0.0;
#pragma omp simd reduction(+ : s)
      for (int64_t q = 0; q < OHW; ++q) s += double(src[q]);
      sums[oc] += s;
    }
  }
}

// Images per pack: small images are convolved B at a time, side by side along the width, so the
// tile rows and the weight-gradient reductions stay long (up to kPackPositions positions) where a
// lone 1-D signal of 40 would fill a 32-wide tile row only 62% of the way. The number of packs is
// then rounded up to a multiple of kPackMultiple, so they share out evenly over threads. It
// depends on the sizes alone, so a forward and its backward agree on the saved layout.
constexpr int64_t kPackPositions = 512, kPackMultiple = 8;

int64_t images_per_pack(int64_t N, int64_t OH, int64_t Wiq) {
  const int64_t per = std::max<int64_t>(1, OH * Wiq);
  const int64_t B = std::max<int64_t>(1, std::min<int64_t>(N, (kPackPositions + per - 1) / per));
  if (B == 1) return 1;
  const int64_t packs = std::min(N, round_up((N + B - 1) / B, kPackMultiple));
  return (N + packs - 1) / packs;
}

// The forward's pack for x (N, C, H, W) under g.
Pack forward_pack(int64_t N, int64_t C, const Window2d& g) {
  const int64_t Wiq = round_up(g.W + g.PW, g.SW) / g.SW;
  return make_pack(C, g.H, g.W, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW, g.DH, g.DW, g.OH, images_per_pack(N, g.OH, Wiq));
}

struct ConvArgs {
  int64_t N, C, OC, groups, Cg, OCg;
};

ConvArgs conv_args(int64_t N, int64_t C, int64_t OC, int64_t groups) {
  check_conv_sizes(N, C, OC, groups);
  return {N, C, OC, groups, C / groups, OC / groups};
}

// ---------------------------------------------------------------- depthwise (groups == C)

// out run (S positions) = sum over taps of w[k] * pk[off[k] + s], in register-held chunks
// (tiles.h: one load and one multiply-add per tap and vector, one store per chunk); the last
// partial chunk through a small buffer (the pack's zero tail covers its overrun reads).
void dw_forward_run(const float* pk, const int64_t* off, const float* w, int64_t taps, int64_t S, float* out) {
  const TileKernels& kn = tile_kernels();
  int64_t s0 = 0;
  for (; s0 + kn.tw <= S; s0 += kn.tw) kn.taps(taps, w, pk + s0, off, out + s0);
  if (s0 == S) return;
  float last[64];
  kn.taps(taps, w, pk + s0, off, last);
  std::memcpy(out + s0, last, sizeof(float) * size_t(S - s0));
}

// keep: the packs go to `packs_out` (packs x img, for the backward); else packs_out holds
// `slots` per-worker packs of scratch.
void depthwise_forward(const float* x, const float* w, const OutEpi& e, float* y, float* packs_out, bool keep,
                       int64_t slots, const ConvArgs& a, const Window2d& g) {
  const Pack p = forward_pack(a.N, a.C, g);
  const Taps t = make_taps(p, 1, g.KH, g.KW, g.DH, g.DW, g.OH);
  const int64_t packs = (a.N + p.B - 1) / p.B, taps = g.KH * g.KW, m = a.OCg;
  int team = packs > 1 ? threads_for(a.N * a.OC * taps * g.OH * g.OW) : 1;
  if (!keep) team = int(std::max<int64_t>(1, std::min<int64_t>(team, slots)));
  const ScratchBuf runs = thread_scratch(0, int64_t(team) * t.S);
  parallel_tasks(packs, team, [&](int64_t q, int worker) {
    float* pk = packs_out + (keep ? q : worker) * p.img;
    float* run = runs.ptr + worker * t.S;
    pack_images(x, q * p.B, a.N, p, pk);
    for (int64_t oc = 0; oc < a.OC; ++oc) {
      dw_forward_run(pk + (oc / m) * p.U * p.plane, t.off.data(), w + oc * taps, taps, t.S, run);
      // one output channel: images a.OC channels apart in y
      const OutEpi ec{e.alpha ? e.alpha + oc : nullptr, e.beta ? e.beta + oc : nullptr, e.act, e.slope};
      unpad_output(run, 0, p.Wq, p.Wiq, ec, y + oc * g.OH * g.OW, a.OC * g.OH * g.OW, q * p.B, a.N, p.B, 1, g.OH, g.OW,
                   [](int64_t) { return int64_t(0); });
    }
  });
}

// One task per input channel: its output channels over every pack, summed in pack order (the same
// bits for any thread count). dx of the channel goes through a one-channel pack buffer: each tap
// adds w * dy where the forward read, and the buffer is unpacked into dx.
void depthwise_backward(const float* dy, const float* saved, const float* w, float* dx, float* dw, float* db,
                        const ConvArgs& a, const Window2d& g) {
  const Pack p = forward_pack(a.N, a.C, g);
  const Taps t = make_taps(p, 1, g.KH, g.KW, g.DH, g.DW, g.OH);
  const int64_t packs = (a.N + p.B - 1) / p.B, taps = g.KH * g.KW, m = a.OCg, cp = p.U * p.plane;
  const int64_t OHW = g.OH * g.OW, gsize = cp + (g.KW - 1) * g.DW / g.SW + 2 * kMaxNR;
  Pack one = p;  // the pack grid of a single channel, to unpack dx
  one.C = 1;
  parallel_chunks(a.C, a.N * a.OC * taps * OHW, [&](int64_t c0, int64_t c1) {
    // this worker's scratch (uninitialized: dq is written whole, gk and acc are cleared below);
    // the double sums live in float storage of twice the length
    const ScratchBuf dqbuf = thread_scratch(0, t.S), gkbuf = thread_scratch(1, gsize);
    const ScratchBuf accbuf = thread_scratch(2, 2 * (m * taps + m));
    float* const dqp = dqbuf.ptr;
    float* const gk = gkbuf.ptr;
    double* const acc = reinterpret_cast<double*>(accbuf.ptr);
    for (int64_t c = c0; c < c1; ++c) {
      std::fill(acc, acc + m * taps + m, 0.0);
      for (int64_t q = 0; q < packs; ++q) {
        const int64_t n0 = q * p.B;
        const float* pk = saved + q * p.img + c * cp;
        if (dx) std::fill(gk, gk + gsize, 0.0f);
        for (int64_t j = 0; j < m; ++j) {
          const int64_t oc = c * m + j;
          dy_channel_major(dy + oc * OHW, a.OC * OHW, n0, a.N, p.B, 1, g.OH, g.OW, p.Wq, p.Wiq, t.S, dqp);
          const float* d = dqp;
          if (db) {
            double s = 0.0;
#pragma omp simd reduction(+ : s)
            for (int64_t i = 0; i < t.S; ++i) s += double(d[i]);
            acc[m * taps + j] += s;
          }
          for (int64_t k = 0; k < taps; ++k) {
            if (dw) {
              const float* src = pk + t.off[size_t(k)];
              double s = 0.0;
#pragma omp simd reduction(+ : s)
              for (int64_t i = 0; i < t.S; ++i) s += double(d[i]) * double(src[i]);
              acc[j * taps + k] += s;
            }
            if (dx) {
              float* dst = gk + t.off[size_t(k)];
              const float wk = w[oc * taps + k];
#pragma omp simd
              for (int64_t i = 0; i < t.S; ++i) dst[i] += wk * d[i];
            }
          }
        }
        if (dx) unpack_images(gk, n0, a.N, one, dx + c * g.H * g.W, a.C * g.H * g.W);
      }
      for (int64_t j = 0; j < m; ++j) {
        if (dw)
          for (int64_t k = 0; k < taps; ++k) dw[(c * m + j) * taps + k] += float(acc[j * taps + k]);
        if (db) db[c * m + j] += float(acc[m * taps + j]);
      }
    }
  });
}

}  // namespace

const char* conv2d_direct_isa() { return tile_kernels().isa; }

void conv2d_direct_saved_shape(int64_t N, int64_t C, const Window2d& g, int64_t& packs, int64_t& size) {
  check(N >= 0 && C >= 1, "convolution sizes must be positive");
  const Pack p = forward_pack(N, C, g);
  packs = (N + p.B - 1) / p.B;
  size = p.img;
}

namespace {

void forward_impl(const float* x, const float* w, const OutEpi& e, float* y, float* packs_out, bool keep, int64_t slots,
                  const ConvArgs& a, const Window2d& g) {
  if (a.N == 0) return;
  if (a.groups > 1 && a.Cg == 1) return depthwise_forward(x, w, e, y, packs_out, keep, slots, a, g);
  const TileKernels& kn = tile_kernels();
  const Pack p = forward_pack(a.N, a.C, g);
  const Taps t = make_taps(p, a.Cg, g.KH, g.KW, g.DH, g.DW, g.OH);
  const int64_t packs = (a.N + p.B - 1) / p.B, K = a.Cg * g.KH * g.KW, outp = round_up(a.OCg, kn.mr);
  const int64_t asize = packed_weights_size(a.OCg, K);
  const ScratchBuf apack = thread_scratch(1, a.groups * asize);
  for (int64_t j = 0; j < a.groups; ++j) pack_weights(w + j * a.OCg * K, a.OCg, K, 1, false, apack.ptr + j * asize);
  int team = packs > 1 ? threads_for(a.N * a.OC * K * g.OH * g.OW) : 1;
  if (!keep) team = int(std::max<int64_t>(1, std::min<int64_t>(team, slots)));
  const int64_t ysize = a.groups * outp * t.Spr;
  const ScratchBuf ypad = thread_scratch(0, int64_t(team) * ysize);  // one per worker; every tile is written
  parallel_tasks(packs, team, [&](int64_t q, int worker) {
    float* pk = packs_out + (keep ? q : worker) * p.img;
    float* yp = ypad.ptr + worker * ysize;
    pack_images(x, q * p.B, a.N, p, pk);
    for (int64_t j = 0; j < a.groups; ++j)
      tile_gemm(outp, K, apack.ptr + j * asize, pk + j * a.Cg * p.U * p.plane, t.off.data(), t.Spr,
                yp + j * outp * t.Spr);
    unpad_output(yp, t.Spr, p.Wq, p.Wiq, e, y, a.OC * g.OH * g.OW, q * p.B, a.N, p.B, a.OC, g.OH, g.OW,
                 [&](int64_t c) { return (c / a.OCg) * outp + c % a.OCg; });
  });
}

}  // namespace

int64_t conv2d_pack_size(int64_t N, int64_t C, const Window2d& g) {
  check(N >= 0 && C >= 1, "convolution sizes must be positive");
  return forward_pack(N, C, g).img;
}

void conv2d_direct_forward(const float* x, const float* w, const float* bias, float* y, float* saved, int64_t N,
                           int64_t C, int64_t OC, int64_t groups, const Window2d& g) {
  const ConvArgs a = conv_args(N, C, OC, groups);
  forward_impl(x, w, OutEpi{nullptr, bias, Act::kIdentity, 0.0f}, y, saved, true, 0, a, g);
}

void conv2d_forward_eval(const float* x, const float* w, float* y, float* scratch_packs, int64_t slots, int64_t N,
                         int64_t C, int64_t OC, int64_t groups, const Window2d& g, const Epilogue& e) {
  const ConvArgs a = conv_args(N, C, OC, groups);
  check(slots >= 1, "the eval convolution needs scratch for at least one pack");
  std::vector<float> alpha(static_cast<size_t>(OC)), beta(static_cast<size_t>(OC));
  epilogue_coeffs(e, OC, alpha.data(), beta.data());
  forward_impl(x, w, OutEpi{alpha.data(), beta.data(), e.act, e.slope}, y, scratch_packs, false, slots, a, g);
}

void conv2d_direct_backward(const float* dy, const float* saved, const float* w, float* dx, float* dw, float* db,
                            int64_t N, int64_t C, int64_t OC, int64_t groups, const Window2d& g) {
  const ConvArgs a = conv_args(N, C, OC, groups);
  if (N == 0) return;
  if (groups > 1 && a.Cg == 1) return depthwise_backward(dy, saved, w, dx, dw, db, a, g);
  const TileKernels& kn = tile_kernels();
  const Pack p = forward_pack(N, C, g);
  const Taps t = make_taps(p, a.Cg, g.KH, g.KW, g.DH, g.DW, g.OH);
  const int64_t packs = (N + p.B - 1) / p.B, KK = g.KH * g.KW, K = a.Cg * KK, OHW = g.OH * g.OW;
  const int64_t cg_size = a.Cg * p.U * p.plane;  // floats of one conv group's channels in a pack

  // Input gradient. Stride 1 with padding <= D*(K-1): the convolution of dy padded by Q = D*(K-1) - P
  // with the flipped weights, on a stride-1 pack of dy. Otherwise gcol = W^T dy and the scatter.
  const bool flipped = g.SH == 1 && g.SW == 1 && g.PH <= g.DH * (g.KH - 1) && g.PW <= g.DW * (g.KW - 1);
  const int64_t QH = g.DH * (g.KH - 1) - g.PH, QW = g.DW * (g.KW - 1) - g.PW;
  Pack dp{};
  Taps dt{};
  const int64_t bsize = !dx ? 0 : flipped ? packed_weights_size(a.Cg, a.OCg * KK) : packed_weights_t_size(a.OCg, K);
  const ScratchBuf bpack = thread_scratch(5, groups * bsize);
  const int64_t crows = round_up(a.Cg, kn.mr), krows = round_up(K, kn.mr);
  if (dx && flipped) {
    // dy's pack: B images of (OH, OW) padded by (QH, QW): its grid matches the forward's images
    // (width OW + 2QW = W + 2PW) so image i of dy lines up with image i of x.
    dp = make_pack(OC, g.OH, g.OW, g.KH, g.KW, 1, 1, QH, QW, g.DH, g.DW, g.H, p.B);
    dt = make_taps(dp, a.OCg, g.KH, g.KW, g.DH, g.DW, g.H);
    for (int64_t j = 0; j < groups; ++j)
      pack_weights(w + j * a.OCg * K, a.Cg, a.OCg * KK, KK, true, bpack.ptr + j * bsize);
  } else if (dx) {
    for (int64_t j = 0; j < groups; ++j) pack_weights_t(w + j * a.OCg * K, a.OCg, K, bpack.ptr + j * bsize);
  }
  std::vector<int64_t> dq_off(static_cast<size_t>(a.OCg));
  for (int64_t oc = 0; oc < a.OCg; ++oc) dq_off[size_t(oc)] = oc * t.Spr;

  // The weight and bias gradients sum over packs: the packs are cut into `parts` fixed runs of
  // consecutive packs (one per thread), each summed into its own partial, and the partials are
  // added in part order: the same bits for a given thread count.
  const bool grads = dw || db;
  // Few output channels take the narrow outer product (16 columns instead of 32 with AVX-512).
  const bool tiny = a.OCg <= kn.tdc, narrow = a.OCg <= kn.ndc;
  const OuterFn outer = tiny ? kn.outer_tiny : narrow ? kn.outer_narrow : kn.outer;
  const int64_t DR = tiny ? kn.tdr : narrow ? kn.ndr : kn.dr, DC = tiny ? kn.tdc : narrow ? kn.ndc : kn.dc;
  const int64_t OCr = round_up(a.OCg, DC), Kr = round_up(K, DR), L = t.S;
  const int team = packs > 1 ? threads_for(N * OC * K * OHW) : 1;
  const int parts = int(std::min<int64_t>(packs, team));
  const int64_t per = (packs + parts - 1) / parts;
  const size_t part_size = size_t(OC * K + OC);
  // (doubles in a float scratch buffer: its storage is aligned for them)
  const ScratchBuf partbuf = thread_scratch(6, grads ? 2 * int64_t(parts * part_size) : 0);
  double* part = reinterpret_cast<double*>(partbuf.ptr);
  if (grads) std::memset(part, 0, sizeof(double) * size_t(parts) * part_size);
  const ScratchBuf zerobuf = thread_scratch(7, grads ? L : 0);
  const float* zeros = zerobuf.ptr;
  if (grads) std::memset(zerobuf.ptr, 0, sizeof(float) * size_t(L));
  // Per-worker scratch. dypack / dq / gcol are fully written before they are read; dT's unowned
  // entries must stay 0, so it starts zeroed.
  const int64_t dysize = dx && flipped ? dp.img : 0;
  const int64_t gsize = dx ? (flipped ? groups * crows * dt.Spr : krows * t.Spr) : 0;
  const int64_t dqsize = dx && !flipped ? a.OCg * t.Spr + kMaxNR : 0;
  const int64_t xgsize = dx && !flipped ? p.img : 0;
  const int64_t dtsize = grads ? groups * L * OCr : 0;
  const ScratchBuf dypack = thread_scratch(0, team * dysize), gbuf = thread_scratch(1, team * gsize);
  const ScratchBuf dqbuf = thread_scratch(2, team * dqsize), xgbuf = thread_scratch(3, team * xgsize);
  const ScratchBuf dTall = thread_scratch(4, team * dtsize);
  std::memset(dTall.ptr, 0, sizeof(float) * size_t(team * dtsize));
  parallel_tasks(parts, team, [&](int64_t part_i, int worker) {
    float* dyp = dypack.ptr + worker * dysize;
    float* gb = gbuf.ptr + worker * gsize;
    float* dq = dqbuf.ptr + worker * dqsize;
    float* xg = xgbuf.ptr + worker * xgsize;
    float* dTw = dTall.ptr + worker * dtsize;
    float tile[kMaxTile];
    const float* rows[kMaxRows];
    double* acc = grads ? part + size_t(part_i) * part_size : nullptr;
    for (int64_t q = part_i * per; q < std::min(packs, (part_i + 1) * per); ++q) {
      const int64_t n0 = q * p.B;
      const float* pk = saved + q * p.img;
      if (dx && flipped) {
        pack_images(dy, n0, N, dp, dyp);
        for (int64_t j = 0; j < groups; ++j)
          tile_gemm(crows, a.OCg * KK, bpack.ptr + j * bsize, dyp + j * a.OCg * dp.plane, dt.off.data(), dt.Spr,
                    gb + j * crows * dt.Spr);
        unpad_output(gb, dt.Spr, dp.Wq, dp.Wiq, OutEpi{nullptr, nullptr, Act::kIdentity, 0.0f}, dx, C * g.H * g.W, n0,
                     N, p.B, C, g.H, g.W, [&](int64_t c) { return (c / a.Cg) * crows + c % a.Cg; });
      } else if (dx) {
        std::memset(xg, 0, sizeof(float) * size_t(p.img));
        for (int64_t j = 0; j < groups; ++j) {
          dy_channel_major(dy + j * a.OCg * OHW, OC * OHW, n0, N, p.B, a.OCg, g.OH, g.OW, p.Wq, p.Wiq, t.Spr, dq);
          tile_gemm(krows, a.OCg, bpack.ptr + j * bsize, dq, dq_off.data(), t.Spr, gb);
          float* xgj = xg + j * cg_size;
          for (int64_t k = 0; k < K; ++k) {
            float* d = xgj + t.off[size_t(k)];
            const float* s = gb + k * t.Spr;
#pragma omp simd
            for (int64_t s2 = 0; s2 < t.S; ++s2) d[s2] += s[s2];
          }
        }
        unpack_images(xg, n0, N, p, dx, C * g.H * g.W);
      }
      if (!grads) continue;
      for (int64_t j = 0; j < groups; ++j) {
        float* dT = dTw + j * L * OCr;
        dy_position_major(dy + j * a.OCg * OHW, OC * OHW, n0, N, p.B, a.OCg, g.OH, g.OW, p.Wq, p.Wiq, OCr, dT,
                          db ? acc + OC * K + j * a.OCg : nullptr);
        if (!dw) continue;
        const float* xj = pk + j * cg_size;
        for (int64_t k0 = 0; k0 < Kr; k0 += DR) {
          for (int64_t i = 0; i < DR; ++i) rows[i] = k0 + i < K ? xj + t.off[size_t(k0 + i)] : zeros;
          for (int64_t oc0 = 0; oc0 < OCr; oc0 += DC) {
            outer(L, rows, dT + oc0, OCr, tile);
            // float per-pack partials (L terms each) summed in double across packs
            for (int64_t i = 0; i < DR && k0 + i < K; ++i)
              for (int64_t c2 = 0; c2 < DC && oc0 + c2 < a.OCg; ++c2)
                acc[(j * a.OCg + oc0 + c2) * K + k0 + i] += double(tile[size_t(i * DC + c2)]);
          }
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
