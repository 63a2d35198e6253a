// Convolution helpers (im2col / col2im, layout moves with a fused bias) and pooling on the GPU,
// mirroring csrc/cpu/conv.cpp; layouts and semantics in csrc/include/fusetrain/conv.h. Each output
// element has one thread that gathers its inputs in the CPU kernel's order (no atomics, so every
// run gives the same bits); the bias gradient reuses common.cuh's fixed-order channel sums.
// reference: torch.nn.functional.conv2d / unfold / fold, max_pool2d, avg_pool2d, adaptive_avg_pool2d.
#include <climits>
#include <cmath>

#include "common.cuh"
#include "fusetrain/cuda_ops.h"

namespace fusetrain {
namespace gpu {

void window2d_init(Window2d& g) {
  fusetrain::window2d_init(g);  // the CPU's rules and messages (inline in conv.h)
  // The kernels index inside a plane with int: every tap, window start and output coordinate is
  // bounded by the padded plane's sides.
  require(g.H + 2 * g.PH < INT_MAX && g.W + 2 * g.PW < INT_MAX,
          "padded input planes must have fewer than 2**31 rows and columns");
  require(g.OH * g.OW < (int64_t(1) << 31), "output planes must have fewer than 2**31 pixels");
}

namespace {

// Window2d narrowed to int for the kernels (window2d_init bounds every in-plane value).
struct Geom {
  int H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW;
  __host__ __device__ int64_t hw() const { return int64_t(H) * W; }
  __host__ __device__ int64_t ohw() const { return int64_t(OH) * OW; }
};

// Re-checks a caller's geometry (its OH/OW included), so a stale Window2d cannot send a kernel
// out of bounds.
Geom checked(const Window2d& g) {
  Window2d c = g;
  gpu::window2d_init(c);  // qualified: ADL also finds the CPU declaration in conv.h
  require(c.OH == g.OH && c.OW == g.OW,
          "window output size " + std::to_string(g.OH) + "x" + std::to_string(g.OW) + " does not match the " +
              "geometry (expected " + std::to_string(c.OH) + "x" + std::to_string(c.OW) + ")");
  return Geom{int(g.H), int(g.W), int(g.KH), int(g.KW), int(g.SH), int(g.SW),
              int(g.PH), int(g.PW), int(g.DH), int(g.DW), int(g.OH), int(g.OW)};
}

// Driver: op(e) for every e in [0, n), one thread per element, grid-stride.
template <class Op>
__global__ void __launch_bounds__(kThreads) each_kernel(Op op, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) op(e);
}

template <class Op>
void launch_each(const Op& op, int64_t n, cudaStream_t stream, const char* name) {
  if (n <= 0) return;
  each_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(op, n);
  check_launch(name);
}

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
  require(N >= 0 && C >= 0, "im2col sizes must be >= 0");
  const Geom geom = checked(g);
  const int64_t KK = g.KH * g.KW, NS = N * geom.ohw(), n = C * KK * NS;
  require_ptr(x, N * C * geom.hw(), "x");
  require_ptr(col, n, "col");
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
  require(N >= 0 && C >= 0, "col2im sizes must be >= 0");
  const Geom geom = checked(g);
  const int64_t KK = g.KH * g.KW, NS = N * geom.ohw(), n = N * C * geom.hw();
  require_ptr(col, C * KK * NS, "col");
  require_ptr(dx, n, "grad_input");
  launch_each(Col2im{col, dx, C, NS, geom.ohw(), geom.hw(), int(KK), geom}, n, stream, "col2im2d");
}

// ---- layout moves ---------------------------------------------------------------------------

namespace {

// dst (N, C, S) from src (C, N*S), plus bias[c] when given (a plain copy otherwise, so -0.0 stays).
struct CnToNc {
  const float* src;
  const float* bias;
  float* dst;
  int64_t N, C, S;
  __device__ __forceinline__ void operator()(int64_t e) const {
    int64_t plane, s, n, c;
    divmod(e, S, plane, s);
    divmod(plane, C, n, c);
    const float v = src[(c * N + n) * S + s];
    dst[e] = bias ? v + bias[c] : v;
  }
};

}  // namespace

void cn_to_nc(const float* src, const float* bias, float* dst, int64_t N, int64_t C, int64_t S,
              cudaStream_t stream) {
  require(N >= 0 && C >= 0 && S >= 0, "cn_to_nc sizes must be >= 0");
  const int64_t n = N * C * S;
  require_ptr(src, n, "src");
  require_ptr(dst, n, "out");
  launch_each(CnToNc{src, bias, dst, N, C, S}, n, stream, "cn_to_nc");
}

namespace {

// dst (C, N*S) from src (N, C, S): a plain copy, one thread per dst element.
struct NcToCn {
  const float* src;
  float* dst;
  int64_t N, C, S;
  __device__ __forceinline__ void operator()(int64_t e) const {
    int64_t plane, s, c, n;
    divmod(e, S, plane, s);
    divmod(plane, N, c, n);
    dst[e] = src[(n * C + c) * S + s];
  }
};

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
  require(N >= 0 && C >= 0 && S >= 0, "nc_to_cn sizes must be >= 0");
  const int64_t n = N * C * S;
  require_ptr(src, n, "src");
  require_ptr(dst, n, "out");
  const char* name = "nc_to_cn";
  if (dbias == nullptr) {
    launch_each(NcToCn{src, dst, N, C, S}, n, stream, name);
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

// ---- max pooling ----------------------------------------------------------------------------

namespace {

// y, idx (P, OH, OW) over x (P, H, W): the CPU kernel's scan (first NaN wins, ties keep the
// first, padding is -inf; a window of -inf points at its first pixel, one wholly in the padding
// at -1, whose gradient goes nowhere).
struct MaxPoolForward {
  const float* x;
  float* y;
  int32_t* idx;
  Geom g;
  __device__ __forceinline__ void operator()(int64_t e) const {
    int64_t p, o;
    divmod(e, g.ohw(), p, o);
    const int oh = int(o) / g.OW, ow = int(o) - oh * g.OW;
    const float* xp = x + p * g.hw();
    const int h0 = oh * g.SH - g.PH, w0 = ow * g.SW - g.PW;
    float best = -INFINITY;
    int bi = -1;
    for (int kh = 0; kh < g.KH; ++kh) {
      const int ih = h0 + kh * g.DH;
      if (ih < 0 || ih >= g.H) continue;
      for (int kw = 0; kw < g.KW; ++kw) {
        const int iw = w0 + kw * g.DW;
        if (iw < 0 || iw >= g.W) continue;
        const int at = ih * g.W + iw;
        const float v = xp[at];
        if (bi < 0) bi = at;
        if (v > best || (isnan(v) && !isnan(best))) {
          best = v;
          bi = at;
        }
      }
    }
    y[e] = best;
    idx[e] = bi;
  }
};

}  // namespace

void maxpool2d_forward(const float* x, float* y, int32_t* idx, int64_t P, const Window2d& g, cudaStream_t stream) {
  require(P >= 0, "maxpool plane count must be >= 0");
  const Geom geom = checked(g);
  const int64_t n = P * geom.ohw();
  require_ptr(x, P * geom.hw(), "x");
  require_ptr(y, n, "out");
  require_ptr(idx, n, "indices");
  launch_each(MaxPoolForward{x, y, idx, geom}, n, stream, "maxpool2d_forward");
}

namespace {

// dx (P, H, W): each pixel gathers dy of the windows containing it whose index names it, in
// increasing output order (the CPU's order of += into dx, so the bits equal its bits). For a
// fixed oh only kh = (ih + PH - oh*SH)/DH reads row ih, so walking kh downwards visits oh upwards.
struct MaxPoolBackward {
  const float* dy;
  const int32_t* idx;
  float* dx;
  Geom g;
  __device__ __forceinline__ void operator()(int64_t e) const {
    int64_t p, pix;
    divmod(e, g.hw(), p, pix);
    const int ih = int(pix) / g.W, iw = int(pix) - ih * g.W;
    const float* dyp = dy + p * g.ohw();
    const int32_t* ip = idx + p * g.ohw();
    float acc = 0.0f;
    for (int kh = g.KH - 1; kh >= 0; --kh) {
      const int th = ih + g.PH - kh * g.DH;  // oh*SH; grows as kh falls
      if (th < 0 || th % g.SH) continue;
      const int oh = th / g.SH;
      if (oh >= g.OH) break;
      for (int kw = g.KW - 1; kw >= 0; --kw) {
        const int tw = iw + g.PW - kw * g.DW;
        if (tw < 0 || tw % g.SW) continue;
        const int ow = tw / g.SW;
        if (ow >= g.OW) break;
        const int o = oh * g.OW + ow;
        if (ip[o] == int32_t(pix)) acc += dyp[o];
      }
    }
    dx[e] = acc;
  }
};

}  // namespace

void maxpool2d_backward(const float* dy, const int32_t* idx, float* dx, int64_t P, const Window2d& g,
                        cudaStream_t stream) {
  require(P >= 0, "maxpool plane count must be >= 0");
  const Geom geom = checked(g);
  require_ptr(dy, P * geom.ohw(), "grad_out");
  require_ptr(idx, P * geom.ohw(), "indices");
  require_ptr(dx, P * geom.hw(), "grad_input");
  launch_each(MaxPoolBackward{dy, idx, dx, geom}, P * geom.hw(), stream, "maxpool2d_backward");
}

// ---- average pooling ------------------------------------------------------------------------

namespace {

// Window [h0, h1) x [w0, w1) of output (oh, ow) clipped to the input, and 1/divisor, as the CPU's
// avg_window: the divisor counts the window clipped to the padded input (count_include_pad) or
// only its real pixels.
struct AvgWin {
  int h0, h1, w0, w1;
  float inv;
};

__device__ __forceinline__ AvgWin avg_window(const Geom& g, int oh, int ow, bool count_include_pad) {
  int h0 = oh * g.SH - g.PH, w0 = ow * g.SW - g.PW;
  int h1 = min(h0 + g.KH, g.H + g.PH), w1 = min(w0 + g.KW, g.W + g.PW);
  const int64_t padded = int64_t(h1 - h0) * (w1 - w0);
  h0 = max(h0, 0);
  w0 = max(w0, 0);
  h1 = min(h1, g.H);
  w1 = min(w1, g.W);
  const int64_t real = int64_t(max(h1 - h0, 0)) * max(w1 - w0, 0);
  const int64_t div = count_include_pad ? padded : real;
  return AvgWin{h0, h1, w0, w1, div > 0 ? float(1.0 / double(div)) : 0.0f};
}

// y (P, OH, OW): the window's sum in double, in the CPU's row-major order.
struct AvgPoolForward {
  const float* x;
  float* y;
  Geom g;
  bool count_include_pad;
  __device__ __forceinline__ void operator()(int64_t e) const {
    int64_t p, o;
    divmod(e, g.ohw(), p, o);
    const int oh = int(o) / g.OW, ow = int(o) - oh * g.OW;
    const AvgWin a = avg_window(g, oh, ow, count_include_pad);
    const float* xp = x + p * g.hw();
    double s = 0.0;
    for (int ih = a.h0; ih < a.h1; ++ih)
      for (int iw = a.w0; iw < a.w1; ++iw) s += double(xp[ih * g.W + iw]);
    y[e] = float(s) * a.inv;
  }
};

}  // namespace

void avgpool2d_forward(const float* x, float* y, int64_t P, const Window2d& g, bool count_include_pad,
                       cudaStream_t stream) {
  require(P >= 0, "avgpool plane count must be >= 0");
  require(g.DH == 1 && g.DW == 1, "average pooling has no dilation");
  const Geom geom = checked(g);
  const int64_t n = P * geom.ohw();
  require_ptr(x, P * geom.hw(), "x");
  require_ptr(y, n, "out");
  launch_each(AvgPoolForward{x, y, geom, count_include_pad}, n, stream, "avgpool2d_forward");
}

namespace {

// dx (P, H, W): each pixel gathers dy/divisor over the windows containing it, in output order.
// Window oh covers rows [oh*SH - PH, oh*SH - PH + KH), so ih lies in windows
// ceil((ih + PH - KH + 1)/SH) .. floor((ih + PH)/SH).
struct AvgPoolBackward {
  const float* dy;
  float* dx;
  Geom g;
  bool count_include_pad;
  __device__ __forceinline__ static void windows(int i, int P, int K, int S, int O, int& lo, int& hi) {
    const int a = i + P - K + 1;
    lo = a <= 0 ? 0 : (a + S - 1) / S;
    hi = min((i + P) / S, O - 1);
  }
  __device__ __forceinline__ void operator()(int64_t e) const {
    int64_t p, pix;
    divmod(e, g.hw(), p, pix);
    const int ih = int(pix) / g.W, iw = int(pix) - ih * g.W;
    int oh0, oh1, ow0, ow1;
    windows(ih, g.PH, g.KH, g.SH, g.OH, oh0, oh1);
    windows(iw, g.PW, g.KW, g.SW, g.OW, ow0, ow1);
    const float* dyp = dy + p * g.ohw();
    float acc = 0.0f;
    for (int oh = oh0; oh <= oh1; ++oh)
      for (int ow = ow0; ow <= ow1; ++ow)
        acc += dyp[oh * g.OW + ow] * avg_window(g, oh, ow, count_include_pad).inv;
    dx[e] = acc;
  }
};

}  // namespace

void avgpool2d_backward(const float* dy, float* dx, int64_t P, const Window2d& g, bool count_include_pad,
                        cudaStream_t stream) {
  require(P >= 0, "avgpool plane count must be >= 0");
  require(g.DH == 1 && g.DW == 1, "average pooling has no dilation");
  const Geom geom = checked(g);
  const int64_t n = P * geom.hw();
  require_ptr(dy, P * geom.ohw(), "grad_out");
  require_ptr(dx, n, "grad_input");
  launch_each(AvgPoolBackward{dy, dx, geom, count_include_pad}, n, stream, "avgpool2d_backward");
}

// ---- adaptive average pooling ---------------------------------------------------------------

namespace {

// Bin i of `out` over `in` inputs: [floor(i*in/out), ceil((i+1)*in/out)).
__device__ __forceinline__ int64_t bin_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
__device__ __forceinline__ int64_t bin_end(int64_t i, int64_t in, int64_t out) {
  return ((i + 1) * in + out - 1) / out;
}

struct AdaptiveForward {
  const float* x;
  float* y;
  int64_t H, W, OH, OW;
  __device__ __forceinline__ void operator()(int64_t e) const {
    int64_t p, o, oh, ow;
    divmod(e, OH * OW, p, o);
    divmod(o, OW, oh, ow);
    const int64_t h0 = bin_start(oh, H, OH), h1 = bin_end(oh, H, OH);
    const int64_t w0 = bin_start(ow, W, OW), w1 = bin_end(ow, W, OW);
    const float* xp = x + p * H * W;
    double s = 0.0;
    for (int64_t ih = h0; ih < h1; ++ih)
      for (int64_t iw = w0; iw < w1; ++iw) s += double(xp[ih * W + iw]);
    const int64_t cnt = (h1 - h0) * (w1 - w0);
    y[e] = cnt > 0 ? float(s / double(cnt)) : 0.0f;
  }
};

void check_adaptive(int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW) {
  require(P >= 0 && H >= 0 && W >= 0, "adaptive pooling sizes must be >= 0");
  require(OH >= 1 && OW >= 1, "adaptive pooling output size must be >= 1");
}

}  // namespace

void adaptive_avgpool2d_forward(const float* x, float* y, int64_t P, int64_t H, int64_t W, int64_t OH,
                                int64_t OW, cudaStream_t stream) {
  check_adaptive(P, H, W, OH, OW);
  require_ptr(x, P * H * W, "x");
  require_ptr(y, P * OH * OW, "out");
  launch_each(AdaptiveForward{x, y, H, W, OH, OW}, P * OH * OW, stream, "adaptive_avgpool2d_forward");
}

namespace {

// dx (P, H, W): each pixel gathers dy/count over the bins containing it, in output order (the
// CPU's order of +=, so the bits equal its bits). Pixel i lies in bins floor(i*out/in) ..
// ceil((i+1)*out/in) - 1; the membership test inside the loop guards those bounds.
struct AdaptiveBackward {
  const float* dy;
  float* dx;
  int64_t H, W, OH, OW;
  __device__ __forceinline__ static void bins(int64_t i, int64_t in, int64_t out, int64_t& lo, int64_t& hi) {
    lo = (i * out) / in;
    hi = min(((i + 1) * out + in - 1) / in - 1, out - 1);
  }
  __device__ __forceinline__ void operator()(int64_t e) const {
    int64_t p, pix, ih, iw;
    divmod(e, H * W, p, pix);
    divmod(pix, W, ih, iw);
    int64_t oh0, oh1, ow0, ow1;
    bins(ih, H, OH, oh0, oh1);
    bins(iw, W, OW, ow0, ow1);
    const float* dyp = dy + p * OH * OW;
    float acc = 0.0f;
    for (int64_t oh = oh0; oh <= oh1; ++oh) {
      const int64_t h0 = bin_start(oh, H, OH), h1 = bin_end(oh, H, OH);
      if (ih < h0 || ih >= h1) continue;
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        const int64_t w0 = bin_start(ow, W, OW), w1 = bin_end(ow, W, OW);
        if (iw < w0 || iw >= w1) continue;
        const int64_t cnt = (h1 - h0) * (w1 - w0);
        acc += float(double(dyp[oh * OW + ow]) / double(cnt));
      }
    }
    dx[e] = acc;
  }
};

}  // namespace

void adaptive_avgpool2d_backward(const float* dy, float* dx, int64_t P, int64_t H, int64_t W, int64_t OH,
                                 int64_t OW, cudaStream_t stream) {
  check_adaptive(P, H, W, OH, OW);
  require_ptr(dy, P * OH * OW, "grad_out");
  require_ptr(dx, P * H * W, "grad_input");
  launch_each(AdaptiveBackward{dy, dx, H, W, OH, OW}, P * H * W, stream, "adaptive_avgpool2d_backward");
}

}  // namespace gpu
}  // namespace fusetrain
