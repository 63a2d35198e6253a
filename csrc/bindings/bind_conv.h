// Bindings of the convolution (fusetrain/conv.h): the im2col route's helpers for _core and _cuda,
// and, in _core only, the CPU's direct convolution. Geometries arrive as the ten sizes of a
// window (H, W, KH, KW, SH, SW, PH, PW, DH, DW) and are checked by window2d_init.
#pragma once
#include <string>

#include "arrays.h"
#include "bind_epilogue.h"
#include "fusetrain/conv.h"

namespace fusetrain_py {

using fusetrain::make_window2d;

// The element count of what the direct forward saves for its backward (packs of the padded input).
inline int64_t saved_size(int64_t N, int64_t C, const fusetrain::Window2d& g) {
  int64_t packs = 0, size = 0;
  fusetrain::conv2d_direct_saved_shape(N, C, g, packs, size);
  return fusetrain::checked_mul(packs, size, "saved");
}

// The CPU's direct convolution: its own layout, no GPU counterpart.
inline void bind_conv_direct(py::module_& m) {
  m.def(
      "conv2d_direct_isa", []() { return std::string(fusetrain::conv2d_direct_isa()); },
      "The instruction set of the convolution's register tiles: avx512, avx2 or portable");
  m.def(
      "conv2d_direct_saved_shape",
      [](int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PH,
         int64_t PW, int64_t DH, int64_t DW) {
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
        fusetrain::check_conv_sizes(N, C, OC, groups);  // before C / groups sizes the weight
        const auto g = make_window2d(H, W, KH, KW, SH, SW, PH, PW, DH, DW);
        Host d;
        d.run(FT_KERNEL(conv2d_direct_forward),
              std::tuple{in(d, x, "x", {N, C, H, W}), in(d, weight, "weight", {OC, C / groups, KH, KW}),
                         in_opt(d, bias, "bias", OC), out(d, out_, "out", {N, OC, g.OH, g.OW}),
                         out(d, saved, "saved", saved_size(N, C, g)), N, C, OC, groups, g});
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
        fusetrain::check_conv_sizes(N, C, OC, groups);  // before C / groups sizes the weight
        const auto g = make_window2d(H, W, KH, KW, SH, SW, PH, PW, DH, DW);
        Host d;
        d.run(FT_KERNEL(conv2d_direct_backward),
              std::tuple{in(d, grad_out, "grad_out", {N, OC, g.OH, g.OW}), in(d, saved, "saved", saved_size(N, C, g)),
                         in(d, weight, "weight", {OC, C / groups, KH, KW}),
                         out_opt(d, grad_input, "grad_input", {N, C, H, W}),
                         out_opt(d, grad_weight, "grad_weight", {OC, C / groups, KH, KW}),
                         out_opt(d, grad_bias, "grad_bias", OC), N, C, OC, groups, g});
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
        fusetrain::check_conv_sizes(N, C, OC, groups);  // before C / groups sizes the weight
        const auto g = make_window2d(H, W, KH, KW, SH, SW, PH, PW, DH, DW);
        Host d;
        const int64_t pack = fusetrain::conv2d_pack_size(N, C, g);
        const int64_t slots = d.size(scratch, "scratch") / pack;
        fusetrain::check(slots >= 1, "scratch must hold at least one pack of " + std::to_string(pack) + " floats");
        d.run(FT_KERNEL(conv2d_forward_eval),
              std::tuple{in(d, x, "x", {N, C, H, W}), in(d, weight, "weight", {OC, C / groups, KH, KW}),
                         out(d, out_, "out", {N, OC, g.OH, g.OW}), out(d, scratch, "scratch", -1), slots, N, C, OC,
                         groups, g, epilogue_args(d, OC, bias, bn_mean, bn_var, bn_weight, bn_bias, eps, act, slope)});
      },
      py::arg("x"), py::arg("weight"), py::arg("out"), py::arg("scratch"), py::arg("N"), py::arg("C"), py::arg("OC"),
      py::arg("groups"), py::arg("H"), py::arg("W"), py::arg("KH"), py::arg("KW"), py::arg("SH"), py::arg("SW"),
      py::arg("PH"), py::arg("PW"), py::arg("DH"), py::arg("DW"), py::arg("bias"), py::arg("bn_mean"),
      py::arg("bn_var"), py::arg("bn_weight"), py::arg("bn_bias"), py::arg("eps"), py::arg("act"), py::arg("slope"),
      "Eval-mode convolution with its epilogue (bias, folded eval batchnorm, activation); saves nothing");
}

template <class Dev>
void bind_conv(py::module_& m) {
  m.def(
      "im2col2d",
      [](py::object x, py::object col, int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t SH,
         int64_t SW, int64_t PH, int64_t PW, int64_t DH, int64_t DW) {
        fusetrain::check_im2col_sizes(N, C, "im2col");
        const auto g = make_window2d(H, W, KH, KW, SH, SW, PH, PW, DH, DW);
        Dev d;
        d.run(FT_KERNEL(im2col2d),
              std::tuple{in(d, x, "x", {N, C, H, W}), out(d, col, "col", {C, KH, KW, N, g.OH, g.OW}), N, C, g});
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
        d.run(FT_KERNEL(col2im2d), std::tuple{in(d, col, "col", {C, KH, KW, N, g.OH, g.OW}),
                                              out(d, grad_input, "grad_input", {N, C, H, W}), N, C, g});
      },
      py::arg("col"), py::arg("grad_input"), py::arg("N"), py::arg("C"), py::arg("H"), py::arg("W"), py::arg("KH"),
      py::arg("KW"), py::arg("SH"), py::arg("SW"), py::arg("PH"), py::arg("PW"), py::arg("DH"), py::arg("DW"),
      "grad_input (N, C, H, W) = the sum of the col entries that read each pixel (overwritten, deterministic)");
  m.def(
      "cn_to_nc",
      [](py::object src, py::object bias, py::object out_, int64_t N, int64_t C, int64_t S) {
        fusetrain::check_layout_sizes(N, C, S, "cn_to_nc");
        Dev d;
        d.run(FT_KERNEL(cn_to_nc), std::tuple{in(d, src, "src", {N, C, S}), in_opt(d, bias, "bias", C),
                                              out(d, out_, "out", {N, C, S}), N, C, S});
      },
      py::arg("src"), py::arg("bias"), py::arg("out"), py::arg("N"), py::arg("C"), py::arg("S"),
      "out (N, C, S) = src (C, N*S) moved to batch-major, plus bias[c] when given");
  m.def(
      "nc_to_cn",
      [](py::object src, py::object out_, py::object grad_bias, int64_t N, int64_t C, int64_t S) {
        fusetrain::check_layout_sizes(N, C, S, "nc_to_cn");
        Dev d;
        d.run(FT_KERNEL(nc_to_cn), std::tuple{in(d, src, "src", {N, C, S}), out(d, out_, "out", {N, C, S}),
                                              out_opt(d, grad_bias, "grad_bias", C), N, C, S});
      },
      py::arg("src"), py::arg("out"), py::arg("grad_bias"), py::arg("N"), py::arg("C"), py::arg("S"),
      "out (C, N*S) = src (N, C, S) moved to channel-major; grad_bias (C,) += per-channel sums (deterministic)");
  if constexpr (!Dev::kCuda) bind_conv_direct(m);
}

}  // namespace fusetrain_py
