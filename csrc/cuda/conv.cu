// The convolution's im2col route on the GPU (im2col / col2im, layout moves with a fused bias; the
// products are cuBLAS calls from fusetrain.ops), mirroring csrc/cpu/im2col.cpp; layouts in
// fusetrain/conv.h. Each output element has one thread that gathers its inputs in the CPU
// kernel's order (no atomics, so every run gives the same bits); the bias gradient reuses
// common.cuh's fixed-order channel sums. reference: torch.nn.functional.unfold / fold.
#include <cmath>

#include "common.cuh"
#include "fusetrain/conv.h"
#include "window.cuh"

namespace fusetrain {

using namespace gpu;

namespace {

// ---- im2col ---------------------------------------------------------------------------------

// col (C*KH*KW, N*OH*OW) from x (N, C, H, W): entry (r = (c, kh, kw), j = (n, oh, ow)) is the
// input pixel that tap reads, 0 in the padding. Consecutive threads write consecutive columns.
struct Im2col {
  const float* x;
  float* col;
  int64_t C, NS, OHW;
  int64_t KK;
  Geom g;
  __device__ __forceinline__ void operator()(int64_t e) const {
    int64_t r, j, n, o, c, k;
    divmod(e, NS, r, j);
    divmod(j, OHW, n, o);
    divmod(r, KK, c, k);
    const int oh = int(o) / g.OW, ow = int(o) - oh * g.OW;
    const int kh = int(k) / g.KW, kw = int(k) - kh * g.KW;
    const int ih = oh * g.SH - g.PH + kh * g.DH;
    const int iw = ow * g.SW - g.PW + kw * g.DW;
    const bool inside = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W;
    col[e] = inside ? x[(n * C + c) * g.hw() + int64_t(ih) * g.W + iw] : 0.0f;
  }
};

}  // namespace

void im2col2d(const float* x, float* col, int64_t N, int64_t C, const Window2d& g, cudaStream_t stream) {
  check_im2col_sizes(N, C, "im2col");
  const Geom geom = checked(g);
  const int64_t KK = g.KH * g.KW, NS = N * geom.ohw(), n = C * KK * NS;
  launch_each(Im2col{x, col, C, NS, geom.ohw(), KK, geom}, n, stream, "im2col2d");
}

// ---- col2im ---------------------------------------------------------------------------------

namespace {

// dx (N, C, H, W) = sum of the col entries that read each pixel. The taps that read (ih, iw) are
// found by inverting ih = oh*SH - PH + kh*DH (likewise for iw) and summed in (kh, kw) order from
// 0.0f: the CPU kernel's order, so the bits equal its bits.
struct Col2im {
  const float* col;
  float* dx;
  int64_t C, NS, OHW, HW;
  int KK;
  Geom g;
  __device__ __forceinline__ void operator()(int64_t e) const {
    int64_t plane, pix, n, c;
    divmod(e, HW, plane, pix);
    divmod(plane, C, n, c);
    const int ih = int(pix) / g.W, iw = int(pix) - ih * g.W;
    const float* src = col + c * KK * NS + n * OHW;
    float acc = 0.0f;
    for (int kh = 0; kh < g.KH; ++kh) {
      const int th = ih + g.PH - kh * g.DH;  // oh*SH; falls as kh grows
      if (th < 0) break;
      if (th % g.SH) continue;
      const int oh = th / g.SH;
      if (oh >= g.OH) continue;
      for (int kw = 0; kw < g.KW; ++kw) {
        const int tw = iw + g.PW - kw * g.DW;
        if (tw < 0) break;
        if (tw % g.SW) continue;
        const int ow = tw / g.SW;
        if (ow >= g.OW) continue;
        acc += src[int64_t(kh * g.KW + kw) * NS + int64_t(oh) * g.OW + ow];
      }
    }
    dx[e] = acc;
  }
};

}  // namespace

void col2im2d(const float* col, float* dx, int64_t N, int64_t C, const Window2d& g, cudaStream_t stream) {
  check_im2col_sizes(N, C, "col2im");
  const Geom geom = checked(g);
  const int64_t KK = g.KH * g.KW, NS = N * geom.ohw(), n = N * C * geom.hw();
  launch_each(Col2im{col, dx, C, NS, geom.ohw(), geom.hw(), int(KK), geom}, n, stream, "col2im2d");
}

// ---- layout moves ---------------------------------------------------------------------------

namespace {

// One element of a move between the batch-major (N, C, S) and channel-major (C, N*S) layouts, one
// thread per dst element: kToNc writes batch-major from channel-major, adding bias[c] when given (a
// plain copy otherwise, so -0.0 stays); else channel-major from batch-major.
template <bool kToNc>
struct LayoutMove {
  const float *src, *bias;
  float* dst;
  int64_t N, C, S;
  __device__ __forceinline__ void operator()(int64_t e) const {
    int64_t plane, s, outer, inner;
    divmod(e, S, plane, s);
    divmod(plane, kToNc ? C : N, outer, inner);
    const int64_t n = kToNc ? outer : inner, c = kToNc ? inner : outer;
    const float v = src[kToNc ? (c * N + n) * S + s : (n * C + c) * S + s];
    dst[e] = kToNc && bias ? v + bias[c] : v;
  }
};

}  // namespace

void cn_to_nc(const float* src, const float* bias, float* dst, int64_t N, int64_t C, int64_t S,
              cudaStream_t stream) {
  check_layout_sizes(N, C, S, "cn_to_nc");
  launch_each(LayoutMove<true>{src, bias, dst, N, C, S}, N * C * S, stream, "cn_to_nc");
}

namespace {

// The same copy while summing each channel (for the bias gradient), driven by common.cuh's
// channel reductions: span() for S > 1 (channel planes), quad() for S == 1 (column tiles).
struct NcToCnSum {
  const float* src;
  float* dst;
  int64_t N, C, S;
  bool vec;  // quad(): float4 loads (C % 4 == 0, src aligned)
  // `width` (1 or 4) values of run (n, c) starting at src element e.
  __device__ __forceinline__ double2 span(int64_t e, int64_t c, int width) const {
    int64_t plane, s, n, unused;
    divmod(e, S, plane, s);
    divmod(plane, C, n, unused);
    float r[4];
    load4(r, src, e, width, width == 4);
    store4(dst, (c * N + n) * S + s, width, r, width == 4);
    double acc = 0.0;
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (j < width) acc += double(r[j]);
    return make_double2(acc, 0.0);
  }
  // S == 1: channels c0 .. c0+cnt of sample n.
  __device__ __forceinline__ void quad(int64_t n, int64_t c0, int64_t e0, int cnt, double2 (&acc)[4]) const {
    float r[4];
    load4(r, src, e0, cnt, vec);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (j >= cnt) break;
      dst[(c0 + j) * N + n] = r[j];
      acc[j].x += double(r[j]);
    }
  }
};

}  // namespace

void nc_to_cn(const float* src, float* dst, float* dbias, int64_t N, int64_t C, int64_t S, cudaStream_t stream) {
  check_layout_sizes(N, C, S, "nc_to_cn");
  const int64_t n = N * C * S;
  const char* name = "nc_to_cn";
  if (dbias == nullptr) {
    launch_each(LayoutMove<false>{src, nullptr, dst, N, C, S}, n, stream, name);
    return;
  }
  if (n == 0) return;  // nothing to move, and the sums are 0
  // Per-(chunk, channel) partials in double, then one fixed-order pass adds them to dbias.
  int64_t chunks = 0;
  ColumnPlan columns{};
  PlanePlan planes{};
  if (S == 1) {
    columns = column_plan(N, C);
    chunks = columns.chunks;
  } else {
    planes = plane_plan(N, C, S, aligned16({src, dst}));
    chunks = planes.chunks;
  }
  Scratch sums(sizeof(double2) * size_t(chunks * C), stream);
  double2* partial = sums.as<double2>();
  const NcToCnSum terms{src, dst, N, C, S, C % 4 == 0 && aligned16({src})};
  if (S == 1) launch_column_partials(terms, N, C, columns, partial, stream, name);
  else launch_plane_partials(terms, N, C, S, planes, partial, stream, name);
  launch_add_column_sums(partial, chunks, C, dbias, nullptr, stream, name);
}

}  // namespace fusetrain
