// The geometry of a 2-D sliding window (a convolution's or a pooling's) over (H, W) planes, and
// the one set of rules every binding and kernel checks it with.
// Output sizes follow PyTorch: OH = (H + 2*PH - DH*(KH-1) - 1) / SH + 1 (floor).
#pragma once
#include <cstdint>
#include <string>

#include "fusetrain/common.h"

namespace fusetrain {

struct Window2d {
  int64_t H, W;    // input plane
  int64_t KH, KW;  // kernel
  int64_t SH, SW;  // stride (>= 1)
  int64_t PH, PW;  // zero padding on each side (>= 0)
  int64_t DH, DW;  // dilation (>= 1)
  int64_t OH, OW;  // output plane, from the formula above
};

// Fills OH/OW from the rest; throws std::invalid_argument when the window does not fit. Every
// value is below 2**31 and the input, padded input and output planes hold fewer than 2**31
// pixels: int32 indices name any pixel, the GPU kernels index planes with int, and no product of
// these values overflows int64.
inline void window2d_init(Window2d& g) {
  constexpr int64_t kLimit = int64_t(1) << 31;
  check(g.H >= 0 && g.W >= 0, "input height and width must be >= 0");
  check(g.KH >= 1 && g.KW >= 1, "kernel size must be >= 1");
  check(g.SH >= 1 && g.SW >= 1, "stride must be >= 1");
  check(g.PH >= 0 && g.PW >= 0, "padding must be >= 0");
  check(g.DH >= 1 && g.DW >= 1, "dilation must be >= 1");
  for (int64_t v : {g.H, g.W, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW, g.DH, g.DW})
    check(v < kLimit, "window sizes must be < 2**31, got " + std::to_string(v));
  check(g.H * g.W < kLimit,
        "input planes must have fewer than 2**31 pixels, got " + std::to_string(g.H) + "x" + std::to_string(g.W));
  const int64_t ph = g.H + 2 * g.PH, pw = g.W + 2 * g.PW;  // each below 3 * 2**31
  check(ph < kLimit && pw < kLimit && ph * pw < kLimit, "padded input planes must have fewer than 2**31 pixels");
  const int64_t eh = g.H + 2 * g.PH - g.DH * (g.KH - 1) - 1;
  const int64_t ew = g.W + 2 * g.PW - g.DW * (g.KW - 1) - 1;
  check(eh >= 0 && ew >= 0, "the (dilated) kernel is larger than the padded input (" + std::to_string(g.H) + "x" +
                                std::to_string(g.W) + ")");
  g.OH = eh / g.SH + 1;
  g.OW = ew / g.SW + 1;
}

// A checked window from its ten sizes (the bindings' arguments H, W, KH, KW, SH, SW, PH, PW, DH, DW).
inline Window2d make_window2d(int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PH,
                              int64_t PW, int64_t DH, int64_t DW) {
  Window2d g{H, W, KH, KW, SH, SW, PH, PW, DH, DW, 0, 0};
  window2d_init(g);
  return g;
}

}  // namespace fusetrain
