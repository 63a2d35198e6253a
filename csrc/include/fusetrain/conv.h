// Convolution and pooling kernels. 1-D ops are the 2-D ones with H = 1, KH = 1. Images x are
// (N, C, H, W) row-major.
//
// On the CPU a convolution runs whole in conv2d_direct_* (no column matrix, no BLAS). The im2col /
// col2im and layout-move helpers serve the GPU path (im2col + cuBLAS) and the tests: the column
// matrix is (C*KH*KW, N*OH*OW) -- row r = (c, kh, kw), column = (n, oh, ow) -- so that forward,
// weight gradient and input gradient are each one GEMM over the whole batch.
// Output sizes follow PyTorch: OH = (H + 2*PH - DH*(KH-1) - 1) / SH + 1 (floor).
// Gradient convention: input gradients are overwritten (=), parameter gradients accumulate (+=).
// reference: torch.nn.functional.conv2d / unfold / fold, max_pool2d, avg_pool2d,
// adaptive_avg_pool2d.
#pragma once
#include <cstdint>
#include <string>

#include "fusetrain/common.h"

namespace fusetrain {

// Geometry of a 2-D sliding window (convolution or pooling) over (H, W) planes.
struct Window2d {
  int64_t H, W;    // input plane
  int64_t KH, KW;  // kernel
  int64_t SH, SW;  // stride (>= 1)
  int64_t PH, PW;  // zero padding on each side (>= 0)
  int64_t DH, DW;  // dilation (>= 1)
  int64_t OH, OW;  // output plane, from the formula above
};

// Fills OH/OW from the rest; throws std::invalid_argument when the window does not fit. Inline:
// _core and _cuda (which does not link _core) check geometries with the same rules and messages.
// Every value is below 2**31 and the input, padded input and output planes hold fewer than 2**31
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
  check(g.H * g.W < kLimit, "input planes must have fewer than 2**31 pixels, got " + std::to_string(g.H) + "x" +
                                std::to_string(g.W));
  const int64_t ph = g.H + 2 * g.PH, pw = g.W + 2 * g.PW;  // each below 3 * 2**31
  check(ph < kLimit && pw < kLimit && ph * pw < kLimit, "padded input planes must have fewer than 2**31 pixels");
  const int64_t eh = g.H + 2 * g.PH - g.DH * (g.KH - 1) - 1;
  const int64_t ew = g.W + 2 * g.PW - g.DW * (g.KW - 1) - 1;
  check(eh >= 0 && ew >= 0, "the (dilated) kernel is larger than the padded input (" + std::to_string(g.H) + "x" +
                                std::to_string(g.W) + ")");
  g.OH = eh / g.SH + 1;
  g.OW = ew / g.SW + 1;
}

// x: (N, C, H, W) -> col: (C*KH*KW, N*OH*OW); padded positions are 0.
void im2col2d(const float* x, float* col, int64_t N, int64_t C, const Window2d& g);

// The adjoint of im2col2d: dx (N, C, H, W) = sum of col entries that read each input pixel.
// dx is overwritten. Parallel over (n, c) planes, so the sum order is fixed (deterministic).
void col2im2d(const float* col, float* dx, int64_t N, int64_t C, const Window2d& g);

// src: (C, N*S) channel-major -> dst: (N, C, S), adding bias[c] (bias may be null).
void cn_to_nc(const float* src, const float* bias, float* dst, int64_t N, int64_t C, int64_t S);

// src: (N, C, S) -> dst: (C, N*S); dbias (C,) += per-channel sums of src when not null
// (summed in double). Used for dy before the weight/input-gradient GEMMs.
void nc_to_cn(const float* src, float* dst, float* dbias, int64_t N, int64_t C, int64_t S);

// Convolution (csrc/cpu/conv2d.cpp), any stride, padding, dilation and group count, on the
// register tiles; groups == C runs a depthwise kernel. The forward keeps the input zero-padded and
// split by stride phase, small images side by side in packs: `saved` (packs, size) floats from
// conv2d_direct_saved_shape, written by the forward, read by the backward. x (N, C, H, W),
// w (OC, C/groups, KH, KW), bias (OC,) or null, y (N, OC, OH, OW).
void conv2d_direct_saved_shape(int64_t N, int64_t C, const Window2d& g, int64_t& packs, int64_t& size);
// Instruction set of the register tiles picked for this CPU: "avx512", "avx2" or "portable".
const char* conv2d_direct_isa();
void conv2d_direct_forward(const float* x, const float* w, const float* bias, float* y, float* saved, int64_t N,
                           int64_t C, int64_t OC, int64_t groups, const Window2d& g);
// Eval-mode forward: nothing is saved; scratch_packs holds `slots` packs of conv2d_pack_size
// floats (one per thread, so at most `slots` threads run); y = epilogue(conv(x)) with the bias,
// a folded eval batchnorm and the activation of e (fusetrain/epilogue.h) applied per channel.
int64_t conv2d_pack_size(int64_t N, int64_t C, const Window2d& g);
void conv2d_forward_eval(const float* x, const float* w, float* y, float* scratch_packs, int64_t slots, int64_t N,
                         int64_t C, int64_t OC, int64_t groups, const Window2d& g, const struct Epilogue& e);
// dx (N, C, H, W) is overwritten (skipped when null); dw (OC, C/groups, KH, KW) and db (OC,)
// accumulate (+=, skipped when null). Weight and bias sums are partials over fixed runs of images
// (one run per thread; per channel for depthwise) combined in order: the same bits for a given
// thread count (any thread count for depthwise).
void conv2d_direct_backward(const float* dy, const float* saved, const float* w, float* dx, float* dw, float* db,
                            int64_t N, int64_t C, int64_t OC, int64_t groups, const Window2d& g);

// Max pooling over P = N*C planes. y: (P, OH, OW); idx: (P, OH, OW) flat index ih*W + iw of the
// chosen input (PyTorch's convention); the first NaN wins, ties keep the first. Padding is -inf.
void maxpool2d_forward(const float* x, float* y, int32_t* idx, int64_t P, const Window2d& g);
// dx: (P, H, W) overwritten: dy routed to the argmax positions (summed where windows overlap).
void maxpool2d_backward(const float* dy, const int32_t* idx, float* dx, int64_t P,
                        const Window2d& g);

// Average pooling (dilation must be 1). count_include_pad: divide by the window size clipped to
// the padded input (PyTorch's default), else by the number of real pixels in the window.
void avgpool2d_forward(const float* x, float* y, int64_t P, const Window2d& g,
                       bool count_include_pad);
void avgpool2d_backward(const float* dy, float* dx, int64_t P, const Window2d& g,
                        bool count_include_pad);

// Adaptive average pooling of (P, H, W) to (P, OH, OW): bin i spans
// [floor(i*H/OH), ceil((i+1)*H/OH)).
void adaptive_avgpool2d_forward(const float* x, float* y, int64_t P, int64_t H, int64_t W,
                                int64_t OH, int64_t OW);
void adaptive_avgpool2d_backward(const float* dy, float* dx, int64_t P, int64_t H, int64_t W,
                                 int64_t OH, int64_t OW);

}  // namespace fusetrain
