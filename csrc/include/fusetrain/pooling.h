// Pooling over P = N*C planes of (H, W) pixels (1-D pooling: H = 1, KH = 1): max, average and
// adaptive average, forward and backward, with the window arithmetic both devices share.
// Input gradients are overwritten (=). reference: torch.nn.functional.max_pool2d, avg_pool2d,
// adaptive_avg_pool2d.
#pragma once
#include <math.h>

#include <cstdint>

#include "fusetrain/window.h"

namespace fusetrain {

// Max pooling. y, idx: (P, OH, OW); idx is the flat index ih*W + iw of the chosen input
// (PyTorch's convention); the first NaN wins, ties keep the first; padding is -inf. A window of
// -inf points at its first pixel, one wholly in the padding at -1 (its gradient goes nowhere).
void max_pool2d_forward(const float* x, float* y, int32_t* idx, int64_t P, const Window2d& g);
void max_pool2d_forward(const float* x, float* y, int32_t* idx, int64_t P, const Window2d& g, cudaStream_t stream);
// dx (P, H, W): dy routed to the argmax positions (summed where windows overlap, in output order).
void max_pool2d_backward(const float* dy, const int32_t* idx, float* dx, int64_t P, const Window2d& g);
void max_pool2d_backward(const float* dy, const int32_t* idx, float* dx, int64_t P, const Window2d& g,
                         cudaStream_t stream);

// Average pooling (dilation must be 1). count_include_pad: divide by the window size clipped to
// the padded input (PyTorch's default), else by the number of real pixels in the window.
void avg_pool2d_forward(const float* x, float* y, int64_t P, const Window2d& g, bool count_include_pad);
void avg_pool2d_forward(const float* x, float* y, int64_t P, const Window2d& g, bool count_include_pad,
                        cudaStream_t stream);
void avg_pool2d_backward(const float* dy, float* dx, int64_t P, const Window2d& g, bool count_include_pad);
void avg_pool2d_backward(const float* dy, float* dx, int64_t P, const Window2d& g, bool count_include_pad,
                         cudaStream_t stream);

// Adaptive average pooling of (P, H, W) to (P, OH, OW): bin i spans [floor(i*H/OH), ceil((i+1)*H/OH)).
void adaptive_avg_pool2d_forward(const float* x, float* y, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW);
void adaptive_avg_pool2d_forward(const float* x, float* y, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                 cudaStream_t stream);
void adaptive_avg_pool2d_backward(const float* dy, float* dx, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW);
void adaptive_avg_pool2d_backward(const float* dy, float* dx, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                  cudaStream_t stream);

// Checks shared by both devices' launchers (each kernel's own preconditions).
inline void check_pool_planes(int64_t P) { check(P >= 0, "pooling plane count must be >= 0"); }
inline void check_avg_pool(int64_t P, const Window2d& g) {
  check_pool_planes(P);
  check(g.DH == 1 && g.DW == 1, "average pooling has no dilation");
}
inline void check_adaptive_pool(int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW) {
  check(P >= 0 && H >= 0 && W >= 0, "adaptive pooling sizes must be >= 0");
  check(OH >= 1 && OW >= 1, "adaptive pooling output size must be >= 1");
}

// ---- element math (both devices) -------------------------------------------------------------

// Whether a max-pooling scan takes v over the best so far: greater, or the first NaN.
FT_HOST_DEVICE bool max_pool_takes(float v, float best) { return v > best || (v != v && best == best); }

// The max of output (oh, ow)'s window over the plane xp (G: a window geometry whose fields are of
// the caller's index type I), padding being -inf: its value, and the flat index of the pixel
// chosen. A window of -inf points at its first pixel, one wholly in the padding at -1.
template <class I>
struct MaxPick {
  float value;
  I index;
};

template <class I, class G>
FT_HOST_DEVICE MaxPick<I> max_pool_window(const float* xp, I oh, I ow, const G& g) {
  MaxPick<I> best{-INFINITY, I(-1)};
  for (I kh = 0; kh < g.KH; ++kh) {
    const I ih = oh * g.SH - g.PH + kh * g.DH;
    if (ih < 0 || ih >= g.H) continue;
    for (I kw = 0; kw < g.KW; ++kw) {
      const I iw = ow * g.SW - g.PW + kw * g.DW;
      if (iw < 0 || iw >= g.W) continue;
      const I at = ih * g.W + iw;
      if (best.index < 0 || max_pool_takes(xp[at], best.value)) best = MaxPick<I>{xp[at], at};
    }
  }
  return best;
}

// Window [h0, h1) x [w0, w1) of output (oh, ow) clipped to the input, and 1/divisor: the divisor
// counts the window clipped to the padded input (count_include_pad) or only its real pixels.
// I is the index type of the caller's loops (int64_t on the CPU, int on the GPU).
template <class I>
struct AvgWindow {
  I h0, h1, w0, w1;
  float inv;
};

template <class I, class G>
FT_HOST_DEVICE AvgWindow<I> avg_pool_window(I oh, I ow, const G& g, bool count_include_pad) {
  const I H = g.H, W = g.W, PH = g.PH, PW = g.PW;
  I h0 = oh * g.SH - PH, w0 = ow * g.SW - PW;
  I h1 = h0 + g.KH < H + PH ? h0 + g.KH : H + PH;
  I w1 = w0 + g.KW < W + PW ? w0 + g.KW : W + PW;
  const int64_t padded = int64_t(h1 - h0) * (w1 - w0);
  h0 = h0 > 0 ? h0 : 0;
  w0 = w0 > 0 ? w0 : 0;
  h1 = h1 < H ? h1 : H;
  w1 = w1 < W ? w1 : W;
  const int64_t real = int64_t(h1 > h0 ? h1 - h0 : 0) * (w1 > w0 ? w1 - w0 : 0);
  const int64_t div = count_include_pad ? padded : real;
  return AvgWindow<I>{h0, h1, w0, w1, div > 0 ? float(1.0 / double(div)) : 0.0f};
}

// Adaptive bin i of `out` over `in` inputs: [floor(i*in/out), ceil((i+1)*in/out)).
FT_HOST_DEVICE int64_t adaptive_bin_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
FT_HOST_DEVICE int64_t adaptive_bin_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

}  // namespace fusetrain
