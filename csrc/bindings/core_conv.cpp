// Bindings for the convolution helpers (im2col/col2im, layout moves) and the pooling kernels.
#include "bind_util.h"
#include "fusetrain/conv.h"
#include "fusetrain/epilogue.h"

namespace fusetrain_py {

namespace {

fusetrain::Window2d window(int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t SH, int64_t SW,
                           int64_t PH, int64_t PW, int64_t DH, int64_t DW) {
  fusetrain::Window2d g{H, W, KH, KW, SH, SW, PH, PW, DH, DW, 0, 0};
  fusetrain::window2d_init(g);
  return g;
}

// Pooling, as PyTorch, needs at least one pixel per plane (any number of planes).
fusetrain::Window2d pool_window(int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PH,
                                int64_t PW, int64_t DH, int64_t DW) {
  fusetrain::check(H >= 1 && W >= 1, "pooling needs input planes of at least 1x1 pixels, got " + std::to_string(H) +
                                         "x" + std::to_string(W));
  return window(H, W, KH, KW, SH, SW, PH, PW, DH, DW);
}

void check_adaptive(int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW) {
  fusetrain::check(P >= 0 && H >= 1 && W >= 1 && OH >= 1 && OW >= 1,
                   "adaptive pooling needs P >= 0 and input and output planes of at least 1x1 pixels");
  fusetrain::check(fusetrain::checked_mul(H, W, "input plane") < (int64_t(1) << 31) &&
                       fusetrain::checked_mul(OH, OW, "output plane") < (int64_t(1) << 31),
                   "adaptive pooling planes must have fewer than 2**31 pixels");
}

void check_groups(int64_t N, int64_t C, int64_t OC, int64_t groups) {
  fusetrain::check(N >= 0 && C >= 1 && OC >= 1 && groups >= 1, "N must be >= 0, C, OC and groups >= 1");
  fusetrain::check(C % groups == 0 && OC % groups == 0, "C and OC must be divisible by groups");
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def("im2col2d", [](py::object x, py::object col, int64_t N, int64_t C, int64_t H, int64_t W,
                       int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PH, int64_t PW,
                       int64_t DH, int64_t DW) {
    fusetrain::check(N >= 0 && C >= 0, "N, C must be >= 0");
    const auto g = window(H, W, KH, KW, SH, SW, PH, PW, DH, DW);
    const float* xp = array_ptr<float>(x, "x", {N, C, H, W}, false);
    float* cp = array_ptr<float>(col, "col", {C, KH, KW, N, g.OH, g.OW}, true);
    py::gil_scoped_release nogil;
    fusetrain::im2col2d(xp, cp, N, C, g);
  });
  m.def("col2im2d", [](py::object col, py::object dx, int64_t N, int64_t C, int64_t H, int64_t W,
                       int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PH, int64_t PW,
                       int64_t DH, int64_t DW) {
    fusetrain::check(N >= 0 && C >= 0, "N, C must be >= 0");
    const auto g = window(H, W, KH, KW, SH, SW, PH, PW, DH, DW);
    const float* cp = array_ptr<float>(col, "col", {C, KH, KW, N, g.OH, g.OW}, false);
    float* dxp = array_ptr<float>(dx, "grad_input", {N, C, H, W}, true);
    py::gil_scoped_release nogil;
    fusetrain::col2im2d(cp, dxp, N, C, g);
  });
  m.def("conv2d_direct_isa", []() { return std::string(fusetrain::conv2d_direct_isa()); });
  m.def("conv2d_direct_saved_shape", [](int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t SH,
                                        int64_t SW, int64_t PH, int64_t PW, int64_t DH, int64_t DW) {
    fusetrain::check(N >= 0 && C >= 1, "N must be >= 0 and C >= 1");
    int64_t packs = 0, size = 0;
    fusetrain::conv2d_direct_saved_shape(N, C, window(H, W, KH, KW, SH, SW, PH, PW, DH, DW), packs, size);
    return py::make_tuple(packs, size);
  });
  m.def("conv2d_direct_forward",
        [](py::object x, py::object w, py::object bias, py::object y, py::object xpad, int64_t N, int64_t C, int64_t OC,
           int64_t groups, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PH, int64_t PW,
           int64_t DH, int64_t DW) {
          check_groups(N, C, OC, groups);
          const auto g = window(H, W, KH, KW, SH, SW, PH, PW, DH, DW);
          const float* xp = array_ptr<float>(x, "x", {N, C, H, W}, false);
          const float* wp = array_ptr<float>(w, "weight", {OC, C / groups, KH, KW}, false);
          int64_t packs = 0, img = 0;
          fusetrain::conv2d_direct_saved_shape(N, C, g, packs, img);
          const float* bp = array_ptr<float>(bias, "bias", OC, false, true);
          float* yp = array_ptr<float>(y, "out", {N, OC, g.OH, g.OW}, true);
          float* sp = array_ptr<float>(xpad, "saved", {packs, img}, true);
          py::gil_scoped_release nogil;
          fusetrain::conv2d_direct_forward(xp, wp, bp, yp, sp, N, C, OC, groups, g);
        });
  m.def("conv2d_direct_backward",
        [](py::object dy, py::object xpad, py::object w, py::object dx, py::object dw, py::object db, int64_t N,
           int64_t C, int64_t OC, int64_t groups, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t SH, int64_t SW,
           int64_t PH, int64_t PW, int64_t DH, int64_t DW) {
          check_groups(N, C, OC, groups);
          const auto g = window(H, W, KH, KW, SH, SW, PH, PW, DH, DW);
          const int64_t wsize = fusetrain::checked_numel({OC, C / groups, KH, KW}, "weight");
          const float* dyp = array_ptr<float>(dy, "grad_out", {N, OC, g.OH, g.OW}, false);
          const float* wp = array_ptr<float>(w, "weight", wsize, false);
          float* dxp = array_ptr<float>(dx, "grad_input", {N, C, H, W}, true, true);
          int64_t packs = 0, img = 0;
          fusetrain::conv2d_direct_saved_shape(N, C, g, packs, img);
          const float* sp = array_ptr<float>(xpad, "saved", {packs, img}, false);
          float* dwp = array_ptr<float>(dw, "grad_weight", wsize, true, true);
          float* dbp = array_ptr<float>(db, "grad_bias", OC, true, true);
          py::gil_scoped_release nogil;
          fusetrain::conv2d_direct_backward(dyp, sp, wp, dxp, dwp, dbp, N, C, OC, groups, g);
        });
  m.def(
      "conv2d_pack_size",
      [](int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PH,
         int64_t PW, int64_t DH,
         int64_t DW) { return fusetrain::conv2d_pack_size(N, C, window(H, W, KH, KW, SH, SW, PH, PW, DH, DW)); },
      py::arg("N"), py::arg("C"), py::arg("H"), py::arg("W"), py::arg("KH"), py::arg("KW"), py::arg("SH"),
      py::arg("SW"), py::arg("PH"), py::arg("PW"), py::arg("DH"), py::arg("DW"),
      "Floats of one pack (the eval forward's per-thread scratch)");
  m.def(
      "conv2d_forward_eval",
      [](py::object x, py::object w, py::object out, py::object scratch, int64_t N, int64_t C, int64_t OC,
         int64_t groups, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PH, int64_t PW,
         int64_t DH, int64_t DW, py::object bias, py::object bn_mean, py::object bn_var, py::object bn_weight,
         py::object bn_bias, double eps, int act, float slope) {
        check_groups(N, C, OC, groups);
        const auto g = window(H, W, KH, KW, SH, SW, PH, PW, DH, DW);
        const int64_t pack = fusetrain::conv2d_pack_size(N, C, g);
        const int64_t slots = array_size(scratch, "scratch") / pack;
        fusetrain::check(slots >= 1, "scratch must hold at least one pack of " + std::to_string(pack) + " floats");
        const float* xp = array_ptr<float>(x, "x", {N, C, H, W}, false);
        const float* wp = array_ptr<float>(w, "weight", {OC, C / groups, KH, KW}, false);
        float* yp = array_ptr<float>(out, "out", {N, OC, g.OH, g.OW}, true);
        float* sp = array_ptr<float>(scratch, "scratch", -1, true);
        const fusetrain::Epilogue e = epilogue_args(OC, bias, bn_mean, bn_var, bn_weight, bn_bias, eps, act, slope);
        py::gil_scoped_release nogil;
        fusetrain::conv2d_forward_eval(xp, wp, yp, sp, slots, N, C, OC, groups, g, e);
      },
      py::arg("x"), py::arg("weight"), py::arg("out"), py::arg("scratch"), py::arg("N"), py::arg("C"), py::arg("OC"),
      py::arg("groups"), py::arg("H"), py::arg("W"), py::arg("KH"), py::arg("KW"), py::arg("SH"), py::arg("SW"),
      py::arg("PH"), py::arg("PW"), py::arg("DH"), py::arg("DW"), py::arg("bias"), py::arg("bn_mean"),
      py::arg("bn_var"), py::arg("bn_weight"), py::arg("bn_bias"), py::arg("eps"), py::arg("act"), py::arg("slope"),
      "Eval-mode convolution with its epilogue (bias, folded eval batchnorm, activation); saves nothing");
  m.def("cn_to_nc", [](py::object src, py::object bias, py::object dst, int64_t N, int64_t C, int64_t S) {
    fusetrain::check(N >= 0 && C >= 0 && S >= 0, "N, C, S must be >= 0");
    const float* sp = array_ptr<float>(src, "src", {N, C, S}, false);
    const float* bp = array_ptr<float>(bias, "bias", C, false, true);
    float* dp = array_ptr<float>(dst, "out", {N, C, S}, true);
    py::gil_scoped_release nogil;
    fusetrain::cn_to_nc(sp, bp, dp, N, C, S);
  });
  m.def("nc_to_cn", [](py::object src, py::object dst, py::object dbias, int64_t N, int64_t C, int64_t S) {
    fusetrain::check(N >= 0 && C >= 0 && S >= 0, "N, C, S must be >= 0");
    const float* sp = array_ptr<float>(src, "src", {N, C, S}, false);
    float* dp = array_ptr<float>(dst, "out", {N, C, S}, true);
    float* bp = array_ptr<float>(dbias, "grad_bias", C, true, true);
    py::gil_scoped_release nogil;
    fusetrain::nc_to_cn(sp, dp, bp, N, C, S);
  });
  m.def("maxpool2d_forward", [](py::object x, py::object y, py::object idx, int64_t P, int64_t H, int64_t W,
                                int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PH, int64_t PW,
                                int64_t DH, int64_t DW) {
    fusetrain::check(P >= 0, "P must be >= 0");
    const auto g = pool_window(H, W, KH, KW, SH, SW, PH, PW, DH, DW);
    const float* xp = array_ptr<float>(x, "x", {P, H, W}, false);
    float* yp = array_ptr<float>(y, "out", {P, g.OH, g.OW}, true);
    int32_t* ip = array_ptr<int32_t>(idx, "indices", {P, g.OH, g.OW}, true);
    py::gil_scoped_release nogil;
    fusetrain::maxpool2d_forward(xp, yp, ip, P, g);
  });
  m.def("maxpool2d_backward", [](py::object dy, py::object idx, py::object dx, int64_t P, int64_t H, int64_t W,
                                 int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PH, int64_t PW,
                                 int64_t DH, int64_t DW) {
    fusetrain::check(P >= 0, "P must be >= 0");
    const auto g = pool_window(H, W, KH, KW, SH, SW, PH, PW, DH, DW);
    const float* dyp = array_ptr<float>(dy, "grad_out", {P, g.OH, g.OW}, false);
    const int32_t* ip = array_ptr<int32_t>(idx, "indices", {P, g.OH, g.OW}, false);
    float* dxp = array_ptr<float>(dx, "grad_input", {P, H, W}, true);
    py::gil_scoped_release nogil;
    fusetrain::maxpool2d_backward(dyp, ip, dxp, P, g);
  });
  m.def("avgpool2d_forward", [](py::object x, py::object y, int64_t P, int64_t H, int64_t W, int64_t KH,
                                int64_t KW, int64_t SH, int64_t SW, int64_t PH, int64_t PW,
                                bool count_include_pad) {
    fusetrain::check(P >= 0, "P must be >= 0");
    const auto g = pool_window(H, W, KH, KW, SH, SW, PH, PW, 1, 1);
    const float* xp = array_ptr<float>(x, "x", {P, H, W}, false);
    float* yp = array_ptr<float>(y, "out", {P, g.OH, g.OW}, true);
    py::gil_scoped_release nogil;
    fusetrain::avgpool2d_forward(xp, yp, P, g, count_include_pad);
  });
  m.def("avgpool2d_backward", [](py::object dy, py::object dx, int64_t P, int64_t H, int64_t W, int64_t KH,
                                 int64_t KW, int64_t SH, int64_t SW, int64_t PH, int64_t PW,
                                 bool count_include_pad) {
    fusetrain::check(P >= 0, "P must be >= 0");
    const auto g = pool_window(H, W, KH, KW, SH, SW, PH, PW, 1, 1);
    const float* dyp = array_ptr<float>(dy, "grad_out", {P, g.OH, g.OW}, false);
    float* dxp = array_ptr<float>(dx, "grad_input", {P, H, W}, true);
    py::gil_scoped_release nogil;
    fusetrain::avgpool2d_backward(dyp, dxp, P, g, count_include_pad);
  });
  m.def("adaptive_avgpool2d_forward", [](py::object x, py::object y, int64_t P, int64_t H, int64_t W,
                                         int64_t OH, int64_t OW) {
    check_adaptive(P, H, W, OH, OW);
    const float* xp = array_ptr<float>(x, "x", {P, H, W}, false);
    float* yp = array_ptr<float>(y, "out", {P, OH, OW}, true);
    py::gil_scoped_release nogil;
    fusetrain::adaptive_avgpool2d_forward(xp, yp, P, H, W, OH, OW);
  });
  m.def("adaptive_avgpool2d_backward", [](py::object dy, py::object dx, int64_t P, int64_t H, int64_t W,
                                          int64_t OH, int64_t OW) {
    check_adaptive(P, H, W, OH, OW);
    const float* dyp = array_ptr<float>(dy, "grad_out", {P, OH, OW}, false);
    float* dxp = array_ptr<float>(dx, "grad_input", {P, H, W}, true);
    py::gil_scoped_release nogil;
    fusetrain::adaptive_avgpool2d_backward(dyp, dxp, P, H, W, OH, OW);
  });
}

}  // namespace fusetrain_py
