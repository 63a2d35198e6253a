// Bindings for batch and layer normalization.
#include "bind_util.h"
#include "fusetrain/batchnorm.h"
#include "fusetrain/layernorm.h"

namespace fusetrain_py {

void bind_batchnorm(py::module_& m) {
  m.def("batchnorm_forward_train",
        [](py::object x, py::object w, py::object b, py::object y, py::object mean, py::object invstd,
           py::object rm, py::object rv, int64_t N, int64_t C, int64_t S, double eps, double momentum,
           bool relu, double p, uint64_t seed, uint64_t offset) {
          fusetrain::check(N >= 0 && C >= 0 && S >= 0, "N, C, S must be >= 0");
          const int64_t n = fusetrain::checked_numel({N, C, S}, "x");
          const float* xp = array_ptr<float>(x, "x", n, false);
          const float* wp = array_ptr<float>(w, "weight", C, false, true);
          const float* bp = array_ptr<float>(b, "bias", C, false, true);
          float* yp = array_ptr<float>(y, "out", n, true);
          float* mp = array_ptr<float>(mean, "mean", C, true);
          float* ip = array_ptr<float>(invstd, "invstd", C, true);
          float* rmp = array_ptr<float>(rm, "running_mean", C, true, true);
          float* rvp = array_ptr<float>(rv, "running_var", C, true, true);
          py::gil_scoped_release nogil;
          fusetrain::batchnorm_forward_train(xp, wp, bp, yp, mp, ip, rmp, rvp, N, C, S, eps, momentum,
                                             relu, p, seed, offset);
        });
  m.def("batchnorm_forward_eval",
        [](py::object x, py::object w, py::object b, py::object rm, py::object rv, py::object y,
           py::object invstd, int64_t N, int64_t C, int64_t S, double eps, bool relu) {
          fusetrain::check(N >= 0 && C >= 0 && S >= 0, "N, C, S must be >= 0");
          const int64_t n = fusetrain::checked_numel({N, C, S}, "x");
          const float* xp = array_ptr<float>(x, "x", n, false);
          const float* wp = array_ptr<float>(w, "weight", C, false, true);
          const float* bp = array_ptr<float>(b, "bias", C, false, true);
          const float* rmp = array_ptr<float>(rm, "running_mean", C, false);
          const float* rvp = array_ptr<float>(rv, "running_var", C, false);
          float* yp = array_ptr<float>(y, "out", n, true);
          float* ip = array_ptr<float>(invstd, "invstd", C, true);
          py::gil_scoped_release nogil;
          fusetrain::batchnorm_forward_eval(xp, wp, bp, rmp, rvp, yp, ip, N, C, S, eps, relu);
        });
  m.def("batchnorm_backward",
        [](py::object dy, py::object x, py::object y, py::object w, py::object mean, py::object invstd,
           py::object dx, py::object dw, py::object db, int64_t N, int64_t C, int64_t S, bool relu,
           double dropout_scale, bool training) {
          fusetrain::check(N >= 0 && C >= 0 && S >= 0, "N, C, S must be >= 0");
          const int64_t n = fusetrain::checked_numel({N, C, S}, "x");
          const float* dyp = array_ptr<float>(dy, "grad_out", n, false);
          const float* xp = array_ptr<float>(x, "x", n, false);
          const float* yp = array_ptr<float>(y, "out", n, false, !relu);
          const float* wp = array_ptr<float>(w, "weight", C, false, true);
          const float* mp = array_ptr<float>(mean, "mean", C, false);
          const float* ip = array_ptr<float>(invstd, "invstd", C, false);
          float* dxp = array_ptr<float>(dx, "grad_input", n, true);
          float* dwp = array_ptr<float>(dw, "grad_weight", C, true, true);
          float* dbp = array_ptr<float>(db, "grad_bias", C, true, true);
          py::gil_scoped_release nogil;
          fusetrain::batchnorm_backward(dyp, xp, yp, wp, mp, ip, dxp, dwp, dbp, N, C, S, relu,
                                        dropout_scale, training);
        });
}

void bind_layernorm(py::module_& m) {
  m.def("layernorm_forward", [](py::object x, py::object w, py::object b, py::object y, py::object mean,
                                py::object rstd, int64_t N, int64_t D, double eps) {
    fusetrain::check(N >= 0 && D >= 0, "N, D must be >= 0");
    const float* xp = array_ptr<float>(x, "x", {N, D}, false);
    const float* wp = array_ptr<float>(w, "weight", D, false, true);
    const float* bp = array_ptr<float>(b, "bias", D, false, true);
    float* yp = array_ptr<float>(y, "out", {N, D}, true);
    float* mp = array_ptr<float>(mean, "mean", N, true);
    float* rp = array_ptr<float>(rstd, "rstd", N, true);
    py::gil_scoped_release nogil;
    fusetrain::layernorm_forward(xp, wp, bp, yp, mp, rp, N, D, eps);
  });
  m.def("layernorm_backward", [](py::object dy, py::object x, py::object w, py::object mean, py::object rstd,
                                 py::object dx, py::object dw, py::object db, int64_t N, int64_t D) {
    fusetrain::check(N >= 0 && D >= 0, "N, D must be >= 0");
    const float* dyp = array_ptr<float>(dy, "grad_out", {N, D}, false);
    const float* xp = array_ptr<float>(x, "x", {N, D}, false);
    const float* wp = array_ptr<float>(w, "weight", D, false, true);
    const float* mp = array_ptr<float>(mean, "mean", N, false);
    const float* rp = array_ptr<float>(rstd, "rstd", N, false);
    float* dxp = array_ptr<float>(dx, "grad_input", {N, D}, true);
    float* dwp = array_ptr<float>(dw, "grad_weight", D, true, true);
    float* dbp = array_ptr<float>(db, "grad_bias", D, true, true);
    py::gil_scoped_release nogil;
    fusetrain::layernorm_backward(dyp, xp, wp, mp, rp, dxp, dwp, dbp, N, D);
  });
}

}  // namespace fusetrain_py
