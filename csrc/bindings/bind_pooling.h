// Bindings of pooling (fusetrain/pooling.h), for _core and _cuda. Geometries arrive as the ten
// sizes of a window (H, W, KH, KW, SH, SW, PH, PW, DH, DW) and are checked by window2d_init.
#pragma once
#include "arrays.h"
#include "fusetrain/pooling.h"

namespace fusetrain_py {

// Pooling, as PyTorch, needs at least one pixel per plane (any number of planes).
inline fusetrain::Window2d pool_window(int64_t P, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t SH, int64_t SW,
                                       int64_t PH, int64_t PW, int64_t DH, int64_t DW) {
  fusetrain::check_pool_planes(P);
  fusetrain::check(H >= 1 && W >= 1, "pooling needs input planes of at least 1x1 pixels, got " + std::to_string(H) +
                                         "x" + std::to_string(W));
  return fusetrain::make_window2d(H, W, KH, KW, SH, SW, PH, PW, DH, DW);
}

inline void check_adaptive_planes(int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW) {
  fusetrain::check_adaptive_pool(P, H, W, OH, OW);
  fusetrain::check(H >= 1 && W >= 1, "adaptive pooling needs input planes of at least 1x1 pixels, got " +
                                         std::to_string(H) + "x" + std::to_string(W));
  fusetrain::check(fusetrain::checked_mul(H, W, "input plane") < (int64_t(1) << 31) &&
                       fusetrain::checked_mul(OH, OW, "output plane") < (int64_t(1) << 31),
                   "adaptive pooling planes must have fewer than 2**31 pixels");
}

template <class Dev>
void bind_pooling(py::module_& m) {
  m.def(
      "max_pool2d_forward",
      [](py::object x, py::object out_, py::object indices, int64_t P, int64_t H, int64_t W, int64_t KH, int64_t KW,
         int64_t SH, int64_t SW, int64_t PH, int64_t PW, int64_t DH, int64_t DW) {
        const auto g = pool_window(P, H, W, KH, KW, SH, SW, PH, PW, DH, DW);
        Dev d;
        d.run(FT_KERNEL(max_pool2d_forward), std::tuple{in(d, x, "x", {P, H, W}), out(d, out_, "out", {P, g.OH, g.OW}),
                                                        out<int32_t>(d, indices, "indices", {P, g.OH, g.OW}), P, g});
      },
      py::arg("x"), py::arg("out"), py::arg("indices"), py::arg("P"), py::arg("H"), py::arg("W"), py::arg("KH"),
      py::arg("KW"), py::arg("SH"), py::arg("SW"), py::arg("PH"), py::arg("PW"), py::arg("DH"), py::arg("DW"),
      "Max pooling of P planes x (P, H, W) into out and the argmax indices (int32, ih*W + iw; -1: all padding)");
  m.def(
      "max_pool2d_backward",
      [](py::object grad_out, py::object indices, py::object grad_input, int64_t P, int64_t H, int64_t W, int64_t KH,
         int64_t KW, int64_t SH, int64_t SW, int64_t PH, int64_t PW, int64_t DH, int64_t DW) {
        const auto g = pool_window(P, H, W, KH, KW, SH, SW, PH, PW, DH, DW);
        Dev d;
        d.run(FT_KERNEL(max_pool2d_backward), std::tuple{in(d, grad_out, "grad_out", {P, g.OH, g.OW}),
                                                         in<int32_t>(d, indices, "indices", {P, g.OH, g.OW}),
                                                         out(d, grad_input, "grad_input", {P, H, W}), P, g});
      },
      py::arg("grad_out"), py::arg("indices"), py::arg("grad_input"), py::arg("P"), py::arg("H"), py::arg("W"),
      py::arg("KH"), py::arg("KW"), py::arg("SH"), py::arg("SW"), py::arg("PH"), py::arg("PW"), py::arg("DH"),
      py::arg("DW"), "grad_input (P, H, W) = grad_out routed to the argmax positions");
  m.def(
      "avg_pool2d_forward",
      [](py::object x, py::object out_, int64_t P, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t SH, int64_t SW,
         int64_t PH, int64_t PW, bool count_include_pad) {
        const auto g = pool_window(P, H, W, KH, KW, SH, SW, PH, PW, 1, 1);
        Dev d;
        d.run(FT_KERNEL(avg_pool2d_forward),
              std::tuple{in(d, x, "x", {P, H, W}), out(d, out_, "out", {P, g.OH, g.OW}), P, g, count_include_pad});
      },
      py::arg("x"), py::arg("out"), py::arg("P"), py::arg("H"), py::arg("W"), py::arg("KH"), py::arg("KW"),
      py::arg("SH"), py::arg("SW"), py::arg("PH"), py::arg("PW"), py::arg("count_include_pad"),
      "Average pooling of P planes x (P, H, W) into out");
  m.def(
      "avg_pool2d_backward",
      [](py::object grad_out, py::object grad_input, int64_t P, int64_t H, int64_t W, int64_t KH, int64_t KW,
         int64_t SH, int64_t SW, int64_t PH, int64_t PW, bool count_include_pad) {
        const auto g = pool_window(P, H, W, KH, KW, SH, SW, PH, PW, 1, 1);
        Dev d;
        d.run(FT_KERNEL(avg_pool2d_backward),
              std::tuple{in(d, grad_out, "grad_out", {P, g.OH, g.OW}), out(d, grad_input, "grad_input", {P, H, W}), P,
                         g, count_include_pad});
      },
      py::arg("grad_out"), py::arg("grad_input"), py::arg("P"), py::arg("H"), py::arg("W"), py::arg("KH"),
      py::arg("KW"), py::arg("SH"), py::arg("SW"), py::arg("PH"), py::arg("PW"), py::arg("count_include_pad"),
      "grad_input (P, H, W) of average pooling");
  m.def(
      "adaptive_avg_pool2d_forward",
      [](py::object x, py::object out_, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW) {
        check_adaptive_planes(P, H, W, OH, OW);
        Dev d;
        d.run(FT_KERNEL(adaptive_avg_pool2d_forward),
              std::tuple{in(d, x, "x", {P, H, W}), out(d, out_, "out", {P, OH, OW}), P, H, W, OH, OW});
      },
      py::arg("x"), py::arg("out"), py::arg("P"), py::arg("H"), py::arg("W"), py::arg("OH"), py::arg("OW"),
      "Adaptive average pooling of P planes (P, H, W) to (P, OH, OW)");
  m.def(
      "adaptive_avg_pool2d_backward",
      [](py::object grad_out, py::object grad_input, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW) {
        check_adaptive_planes(P, H, W, OH, OW);
        Dev d;
        d.run(FT_KERNEL(adaptive_avg_pool2d_backward),
              std::tuple{in(d, grad_out, "grad_out", {P, OH, OW}), out(d, grad_input, "grad_input", {P, H, W}), P, H, W,
                         OH, OW});
      },
      py::arg("grad_out"), py::arg("grad_input"), py::arg("P"), py::arg("H"), py::arg("W"), py::arg("OH"),
      py::arg("OW"), "grad_input (P, H, W) of adaptive average pooling");
}

}  // namespace fusetrain_py
