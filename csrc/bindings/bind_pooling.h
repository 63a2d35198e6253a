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
        const float* xp = in<float>(d, x, "x", dims({P, H, W}, "x"));
        float* yp = out<float>(d, out_, "out", dims({P, g.OH, g.OW}, "out"));
        int32_t* ip = out<int32_t>(d, indices, "indices", dims({P, g.OH, g.OW}, "indices"));
        d.launch([&](auto... stream) { fusetrain::max_pool2d_forward(xp, yp, ip, P, g, stream...); });
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
        const float* dyp = in<float>(d, grad_out, "grad_out", dims({P, g.OH, g.OW}, "grad_out"));
        const int32_t* ip = in<int32_t>(d, indices, "indices", dims({P, g.OH, g.OW}, "indices"));
        float* dxp = out<float>(d, grad_input, "grad_input", dims({P, H, W}, "grad_input"));
        d.launch([&](auto... stream) { fusetrain::max_pool2d_backward(dyp, ip, dxp, P, g, stream...); });
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
        const float* xp = in<float>(d, x, "x", dims({P, H, W}, "x"));
        float* yp = out<float>(d, out_, "out", dims({P, g.OH, g.OW}, "out"));
        d.launch([&](auto... stream) { fusetrain::avg_pool2d_forward(xp, yp, P, g, count_include_pad, stream...); });
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
        const float* dyp = in<float>(d, grad_out, "grad_out", dims({P, g.OH, g.OW}, "grad_out"));
        float* dxp = out<float>(d, grad_input, "grad_input", dims({P, H, W}, "grad_input"));
        d.launch([&](auto... stream) { fusetrain::avg_pool2d_backward(dyp, dxp, P, g, count_include_pad, stream...); });
      },
      py::arg("grad_out"), py::arg("grad_input"), py::arg("P"), py::arg("H"), py::arg("W"), py::arg("KH"),
      py::arg("KW"), py::arg("SH"), py::arg("SW"), py::arg("PH"), py::arg("PW"), py::arg("count_include_pad"),
      "grad_input (P, H, W) of average pooling");
  m.def(
      "adaptive_avg_pool2d_forward",
      [](py::object x, py::object out_, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW) {
        check_adaptive_planes(P, H, W, OH, OW);
        Dev d;
        const float* xp = in<float>(d, x, "x", dims({P, H, W}, "x"));
        float* yp = out<float>(d, out_, "out", dims({P, OH, OW}, "out"));
        d.launch([&](auto... stream) { fusetrain::adaptive_avg_pool2d_forward(xp, yp, P, H, W, OH, OW, stream...); });
      },
      py::arg("x"), py::arg("out"), py::arg("P"), py::arg("H"), py::arg("W"), py::arg("OH"), py::arg("OW"),
      "Adaptive average pooling of P planes (P, H, W) to (P, OH, OW)");
  m.def(
      "adaptive_avg_pool2d_backward",
      [](py::object grad_out, py::object grad_input, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW) {
        check_adaptive_planes(P, H, W, OH, OW);
        Dev d;
        const float* dyp = in<float>(d, grad_out, "grad_out", dims({P, OH, OW}, "grad_out"));
        float* dxp = out<float>(d, grad_input, "grad_input", dims({P, H, W}, "grad_input"));
        d.launch(
            [&](auto... stream) { fusetrain::adaptive_avg_pool2d_backward(dyp, dxp, P, H, W, OH, OW, stream...); });
      },
      py::arg("grad_out"), py::arg("grad_input"), py::arg("P"), py::arg("H"), py::arg("W"), py::arg("OH"),
      py::arg("OW"), "grad_input (P, H, W) of adaptive average pooling");
}

}  // namespace fusetrain_py
