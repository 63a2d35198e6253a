// Pooling on the GPU, mirroring csrc/cpu/pooling.cpp with the window arithmetic of
// fusetrain/pooling.h: each output (forward) or input pixel (backward) has one thread that gathers
// in the CPU kernel's order (no atomics), so every run gives the same bits.
#include <cmath>

#include "common.cuh"
#include "fusetrain/pooling.h"
#include "window.cuh"

namespace fusetrain {

using namespace gpu;

namespace {

// ---- max pooling ----------------------------------------------------------------------------

// y, idx (P, OH, OW) over x (P, H, W): the CPU kernel's scan (first NaN wins, ties keep the
// first, padding is -inf; a window of -inf points at its first pixel, one wholly in the padding
// at -1, whose gradient goes nowhere).
struct MaxPoolForward {
  const float* x;
  float* y;
  int32_t* idx;
  Geom g;
  __device__ __forceinline__ void operator()(int64_t e) const {
    const auto [p, oh, ow] = g.output_of(e);
    const MaxPick<int> best = max_pool_window(x + p * g.hw(), oh, ow, g);
    y[e] = best.value;
    idx[e] = best.index;
  }
};

// dx (P, H, W): each pixel gathers dy of the windows containing it whose index names it, in
// increasing output order (the CPU's order of += into dx, so the bits equal its bits). For a
// fixed oh only kh = (ih + PH - oh*SH)/DH reads row ih, so walking kh downwards visits oh upwards.
struct MaxPoolBackward {
  const float* dy;
  const int32_t* idx;
  float* dx;
  Geom g;
  __device__ __forceinline__ void operator()(int64_t e) const {
    const auto [p, ih, iw] = g.pixel_of(e);
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
        if (ip[o] == ih * g.W + iw) acc += dyp[o];
      }
    }
    dx[e] = acc;
  }
};

// ---- average pooling ------------------------------------------------------------------------

// y (P, OH, OW): the window's sum in double, in the CPU's row-major order.
struct AvgPoolForward {
  const float* x;
  float* y;
  Geom g;
  bool count_include_pad;
  __device__ __forceinline__ void operator()(int64_t e) const {
    const auto [p, oh, ow] = g.output_of(e);
    const AvgWindow<int> a = avg_pool_window<int>(oh, ow, g, count_include_pad);
    const float* xp = x + p * g.hw();
    double s = 0.0;
    for (int ih = a.h0; ih < a.h1; ++ih)
      for (int iw = a.w0; iw < a.w1; ++iw) s += double(xp[ih * g.W + iw]);
    y[e] = float(s) * a.inv;
  }
};

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
    const auto [p, ih, iw] = g.pixel_of(e);
    int oh0, oh1, ow0, ow1;
    windows(ih, g.PH, g.KH, g.SH, g.OH, oh0, oh1);
    windows(iw, g.PW, g.KW, g.SW, g.OW, ow0, ow1);
    const float* dyp = dy + p * g.ohw();
    float acc = 0.0f;
    for (int oh = oh0; oh <= oh1; ++oh)
      for (int ow = ow0; ow <= ow1; ++ow)
        acc += dyp[oh * g.OW + ow] * avg_pool_window<int>(oh, ow, g, count_include_pad).inv;
    dx[e] = acc;
  }
};

// ---- adaptive average pooling ---------------------------------------------------------------

struct AdaptiveForward {
  const float* x;
  float* y;
  int64_t H, W, OH, OW;
  __device__ __forceinline__ void operator()(int64_t e) const {
    int64_t p, o, oh, ow;
    divmod(e, OH * OW, p, o);
    divmod(o, OW, oh, ow);
    const int64_t h0 = adaptive_bin_start(oh, H, OH), h1 = adaptive_bin_end(oh, H, OH);
    const int64_t w0 = adaptive_bin_start(ow, W, OW), w1 = adaptive_bin_end(ow, W, OW);
    const float* xp = x + p * H * W;
    double s = 0.0;
    for (int64_t ih = h0; ih < h1; ++ih)
      for (int64_t iw = w0; iw < w1; ++iw) s += double(xp[ih * W + iw]);
    const int64_t cnt = (h1 - h0) * (w1 - w0);
    y[e] = cnt > 0 ? float(s / double(cnt)) : 0.0f;
  }
};

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
      const int64_t h0 = adaptive_bin_start(oh, H, OH), h1 = adaptive_bin_end(oh, H, OH);
      if (ih < h0 || ih >= h1) continue;
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        const int64_t w0 = adaptive_bin_start(ow, W, OW), w1 = adaptive_bin_end(ow, W, OW);
        if (iw < w0 || iw >= w1) continue;
        const int64_t cnt = (h1 - h0) * (w1 - w0);
        acc += float(double(dyp[oh * OW + ow]) / double(cnt));
      }
    }
    dx[e] = acc;
  }
};

}  // namespace

void max_pool2d_forward(const float* x, float* y, int32_t* idx, int64_t P, const Window2d& g, cudaStream_t stream) {
  check_pool_planes(P);
  launch_each(MaxPoolForward{x, y, idx, checked(g)}, P * g.OH * g.OW, stream, "max_pool2d_forward");
}

void max_pool2d_backward(const float* dy, const int32_t* idx, float* dx, int64_t P, const Window2d& g,
                         cudaStream_t stream) {
  check_pool_planes(P);
  launch_each(MaxPoolBackward{dy, idx, dx, checked(g)}, P * g.H * g.W, stream, "max_pool2d_backward");
}

void avg_pool2d_forward(const float* x, float* y, int64_t P, const Window2d& g, bool count_include_pad,
                        cudaStream_t stream) {
  check_avg_pool(P, g);
  launch_each(AvgPoolForward{x, y, checked(g), count_include_pad}, P * g.OH * g.OW, stream, "avg_pool2d_forward");
}

void avg_pool2d_backward(const float* dy, float* dx, int64_t P, const Window2d& g, bool count_include_pad,
                         cudaStream_t stream) {
  check_avg_pool(P, g);
  launch_each(AvgPoolBackward{dy, dx, checked(g), count_include_pad}, P * g.H * g.W, stream, "avg_pool2d_backward");
}

void adaptive_avg_pool2d_forward(const float* x, float* y, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                 cudaStream_t stream) {
  check_adaptive_pool(P, H, W, OH, OW);
  launch_each(AdaptiveForward{x, y, H, W, OH, OW}, P * OH * OW, stream, "adaptive_avg_pool2d_forward");
}

void adaptive_avg_pool2d_backward(const float* dy, float* dx, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                  cudaStream_t stream) {
  check_adaptive_pool(P, H, W, OH, OW);
  launch_each(AdaptiveBackward{dy, dx, H, W, OH, OW}, P * H * W, stream, "adaptive_avg_pool2d_backward");
}

}  // namespace fusetrain
