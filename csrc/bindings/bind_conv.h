// Bindings of the convolution (fusetrain/conv.h): the im2col route's helpers for _core and _cuda,
// and, in _core only, the CPU's direct convolution. Geometries arrive as the ten sizes of a
// window (H, W, KH, KW, SH, SW, PH, PW, DH, DW) and are checked by window2d_init.
#pragma once
#include <string>

#include "arrays.h"
#include "bind_epilogue.h"
#include "fusetrain/conv.h"

namespace fusetrain_py {

inline void check_groups(int64_t N, int64_t C, int64_t OC, int64_t groups) {
  fusetrain::check(N >= 0 && C >= 1 && OC >= 1 && groups >= 1, "N must be >= 0, C, OC and groups >= 1");
  fusetrain::check(C % groups == 0 && OC % groups == 0, "C and OC must be divisible by groups");
}

// (packs, size) of the zero-padded, phase-split input the direct forward saves for its backward.
inline int64_t saved_size(int64_t N, int64_t C, const fusetrain::Window2d& g) {
  int64_t packs = 0, size = 0;
  fusetrain::conv2d_direct_saved_shape(N, C, g, packs, size);
  return dims({packs, size}, "saved");
}

// The CPU's direct convolution: its own layout, no GPU counterpart.
inline void bind_conv_direct(py::module_& m) {
  using fusetrain::make_window2d;
  m.def(
      "conv2d_direct_isa", []() { return std::string(fusetrain::conv2d_direct_isa()); },
      "The instruction set of the convolution's register tiles: avx512, avx2 or portable");
  m.def(
      "conv2d_direct_saved_shape",
      [](int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PH,
         int64_t PW, int64_t DH, int64_t DW) {
        fusetrain::check(N >= 0 && C >= 1, "N must be >= 0 and C >= 1");
        int64_t packs = 0, size = 0;
        fusetrain::conv2d_direct_saved_shape(N, C, make_window2d(H, W, KH, KW, SH, SW, PH, PW, DH, DW), packs, size);
        return py::make_tuple(packs, size);
      },
      py::arg("N"), py::arg("C"), py::arg("H"), py::arg("W"), py::arg("KH"), py::arg("KW"), py::arg("SH"),
      py::arg("SW"), py::arg("PH"), py::arg("PW"), py::arg("DH"), py::arg("DW"),
      "(packs, size): the shape of what conv2d_direct_forward saves for its backward");
  m.def(
      "conv2d_direct_forward",
      [](py::object x, py::object weight, py::object bias, py::object out_, py::object saved, int64_t N, int64_t C,
         int64_t OC, int64_t groups, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PH,
         int64_t PW, int64_t DH, int64_t DW) {
        check_groups(N, C, OC, groups);
        const auto g = make_window2d(H, W, KH, KW, SH, SW, PH, PW, DH, DW);
        Host d;
        const float* xp = in<float>(d, x, "x", dims({N, C, H, W}, "x"));
        const float* wp = in<float>(d, weight, "weight", dims({OC, C / groups, KH, KW}, "weight"));
        const float* bp = in_opt<float>(d, bias, "bias", OC);
        float* yp = out<float>(d, out_, "out", dims({N, OC, g.OH, g.OW}, "out"));
        float* sp = out<float>(d, saved, "saved", saved_size(N, C, g));
        d.launch([&] { fusetrain::conv2d_direct_forward(xp, wp, bp, yp, sp, N, C, OC, groups, g); });
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("out"), py::arg("saved"), py::arg("N"), py::arg("C"),
      py::arg("OC"), py::arg("groups"), py::arg("H"), py::arg("W"), py::arg("KH"), py::arg("KW"), py::arg("SH"),
      py::arg("SW"), py::arg("PH"), py::arg("PW"), py::arg("DH"), py::arg("DW"),
      "out (N, OC, OH, OW) = conv2d(x, weight) + bias; saved receives what the backward reads");
  m.def(
      "conv2d_direct_backward",
      [](py::object grad_out, py::object saved, py::object weight, py::object grad_input, py::object grad_weight,
         py::object grad_bias, int64_t N, int64_t C, int64_t OC, int64_t groups, int64_t H, int64_t W, int64_t KH,
         int64_t KW, int64_t SH, int64_t SW, int64_t PH, int64_t PW, int64_t DH, int64_t DW) {
        check_groups(N, C, OC, groups);
        const auto g = make_window2d(H, W, KH, KW, SH, SW, PH, PW, DH, DW);
        const int64_t wsize = dims({OC, C / groups, KH, KW}, "weight");
        Host d;
        const float* dyp = in<float>(d, grad_out, "grad_out", dims({N, OC, g.OH, g.OW}, "grad_out"));
        const float* wp = in<float>(d, weight, "weight", wsize);
        float* dxp = out_opt<float>(d, grad_input, "grad_input", dims({N, C, H, W}, "grad_input"));
        const float* sp = in<float>(d, saved, "saved", saved_size(N, C, g));
        float* dwp = out_opt<float>(d, grad_weight, "grad_weight", wsize);
        float* dbp = out_opt<float>(d, grad_bias, "grad_bias", OC);
        d.launch([&] { fusetrain::conv2d_direct_backward(dyp, sp, wp, dxp, dwp, dbp, N, C, OC, groups, g); });
      },
      py::arg("grad_out"), py::arg("saved"), py::arg("weight"), py::arg("grad_input"), py::arg("grad_weight"),
      py::arg("grad_bias"), py::arg("N"), py::arg("C"), py::arg("OC"), py::arg("groups"), py::arg("H"), py::arg("W"),
      py::arg("KH"), py::arg("KW"), py::arg("SH"), py::arg("SW"), py::arg("PH"), py::arg("PW"), py::arg("DH"),
      py::arg("DW"),
      "grad_input overwritten (skipped when None); grad_weight and grad_bias accumulated (+=) when given");
  m.def(
      "conv2d_pack_size",
      [](int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PH,
         int64_t PW, int64_t DH,
         int64_t DW) { return fusetrain::conv2d_pack_size(N, C, make_window2d(H, W, KH, KW, SH, SW, PH, PW, DH, DW)); },
      py::arg("N"), py::arg("C"), py::arg("H"), py::arg("W"), py::arg("KH"), py::arg("KW"), py::arg("SH"),
      py::arg("SW"), py::arg("PH"), py::arg("PW"), py::arg("DH"), py::arg("DW"),
      "Floats of one pack (the eval forward's per-thread scratch)");
  m.def(
      "conv2d_forward_eval",
      [](py::object x, py::object weight, py::object out_, py::object scratch, int64_t N, int64_t C, int64_t OC,
         int64_t groups, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PH, int64_t PW,
         int64_t DH, int64_t DW, py::object bias, py::object bn_mean, py::object bn_var, py::object bn_weight,
         py::object bn_bias, double eps, int act, float slope) {
        check_groups(N, C, OC, groups);
        const auto g = make_window2d(H, W, KH, KW, SH, SW, PH, PW, DH, DW);
        Host d;
        const int64_t pack = fusetrain::conv2d_pack_size(N, C, g);
        const int64_t slots = d.size(scratch, "scratch") / pack;
        fusetrain::check(slots >= 1, "scratch must hold at least one pack of " + std::to_string(pack) + " floats");
        const float* xp = in<float>(d, x, "x", dims({N, C, H, W}, "x"));
        const float* wp = in<float>(d, weight, "weight", dims({OC, C / groups, KH, KW}, "weight"));
        float* yp = out<float>(d, out_, "out", dims({N, OC, g.OH, g.OW}, "out"));
        float* sp = out<float>(d, scratch, "scratch", -1);
        const fusetrain::Epilogue e = epilogue_args(d, OC, bias, bn_mean, bn_var, bn_weight, bn_bias, eps, act, slope);
        d.launch([&] { fusetrain::conv2d_forward_eval(xp, wp, yp, sp, slots, N, C, OC, groups, g, e); });
      },
      py::arg("x"), py::arg("weight"), py::arg("out"), py::arg("scratch"), py::arg("N"), py::arg("C"), py::arg("OC"),
      py::arg("groups"), py::arg("H"), py::arg("W"), py::arg("KH"), py::arg("KW"), py::arg("SH"), py::arg("SW"),
      py::arg("PH"), py::arg("PW"), py::arg("DH"), py::arg("DW"), py::arg("bias"), py::arg("bn_mean"),
      py::arg("bn_var"), py::arg("bn_weight"), py::arg("bn_bias"), py::arg("eps"), py::arg("act"), py::arg("slope"),
      "Eval-mode convolution with its epilogue (bias, folded eval batchnorm, activation); saves nothing");
}

template <class Dev>
void bind_conv(py::module_& m) {
  using fusetrain::make_window2d;
  m.def(
      "im2col2d",
      [](py::object x, py::object col, int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t SH,
         int64_t SW, int64_t PH, int64_t PW, int64_t DH, int64_t DW) {
        fusetrain::check_im2col_sizes(N, C, "im2col");
        const auto g = make_window2d(H, W, KH, KW, SH, SW, PH, PW, DH, DW);
        Dev d;
        const float* xp = in<float>(d, x, "x", dims({N, C, H, W}, "x"));
        float* cp = out<float>(d, col, "col", dims({C, KH, KW, N, g.OH, g.OW}, "col"));
        d.launch([&](auto... stream) { fusetrain::im2col2d(xp, cp, N, C, g, stream...); });
      },
      py::arg("x"), py::arg("col"), py::arg("N"), py::arg("C"), py::arg("H"), py::arg("W"), py::arg("KH"),
      py::arg("KW"), py::arg("SH"), py::arg("SW"), py::arg("PH"), py::arg("PW"), py::arg("DH"), py::arg("DW"),
      "col (C*KH*KW, N*OH*OW) = the input pixel each tap reads, 0 in the padding");
  m.def(
      "col2im2d",
      [](py::object col, py::object grad_input, int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW,
         int64_t SH, int64_t SW, int64_t PH, int64_t PW, int64_t DH, int64_t DW) {
        fusetrain::check_im2col_sizes(N, C, "col2im");
        const auto g = make_window2d(H, W, KH, KW, SH, SW, PH, PW, DH, DW);
        Dev d;
        const float* cp = in<float>(d, col, "col", dims({C, KH, KW, N, g.OH, g.OW}, "col"));
        float* dxp = out<float>(d, grad_input, "grad_input", dims({N, C, H, W}, "grad_input"));
        d.launch([&](auto... stream) { fusetrain::col2im2d(cp, dxp, N, C, g, stream...); });
      },
      py::arg("col"), py::arg("grad_input"), py::arg("N"), py::arg("C"), py::arg("H"), py::arg("W"), py::arg("KH"),
      py::arg("KW"), py::arg("SH"), py::arg("SW"), py::arg("PH"), py::arg("PW"), py::arg("DH"), py::arg("DW"),
      "grad_input (N, C, H, W) = the sum of the col entries that read each pixel (overwritten, deterministic)");
  m.def(
      "cn_to_nc",
      [](py::object src, py::object bias, py::object out_, int64_t N, int64_t C, int64_t S) {
        fusetrain::check_layout_sizes(N, C, S, "cn_to_nc");
        Dev d;
        const float* sp = in<float>(d, src, "src", dims({N, C, S}, "src"));
        const float* bp = in_opt<float>(d, bias, "bias", C);
        float* dp = out<float>(d, out_, "out", dims({N, C, S}, "out"));
        d.launch([&](auto... stream) { fusetrain::cn_to_nc(sp, bp, dp, N, C, S, stream...); });
      },
      py::arg("src"), py::arg("bias"), py::arg("out"), py::arg("N"), py::arg("C"), py::arg("S"),
      "out (N, C, S) = src (C, N*S) moved to batch-major, plus bias[c] when given");
  m.def(
      "nc_to_cn",
      [](py::object src, py::object out_, py::object grad_bias, int64_t N, int64_t C, int64_t S) {
        fusetrain::check_layout_sizes(N, C, S, "nc_to_cn");
        Dev d;
        const float* sp = in<float>(d, src, "src", dims({N, C, S}, "src"));
        float* dp = out<float>(d, out_, "out", dims({N, C, S}, "out"));
        float* bp = out_opt<float>(d, grad_bias, "grad_bias", C);
        d.launch([&](auto... stream) { fusetrain::nc_to_cn(sp, dp, bp, N, C, S, stream...); });
      },
      py::arg("src"), py::arg("out"), py::arg("grad_bias"), py::arg("N"), py::arg("C"), py::arg("S"),
      "out (C, N*S) = src (N, C, S) moved to channel-major; grad_bias (C,) += per-channel sums (deterministic)");
  if constexpr (!Dev::kCuda) bind_conv_direct(m);
}

}  // namespace fusetrain_py
