// Bindings for the eval-mode epilogues (per-channel scale/shift/activation, residual add).
#include "bind_util.h"

namespace fusetrain_py {

void bind_epilogue(py::module_& m) {
  m.def(
      "channel_affine_act",
      [](py::object x, py::object out, int64_t N, int64_t C, int64_t S, py::object bias, py::object bn_mean,
         py::object bn_var, py::object bn_weight, py::object bn_bias, double eps, int act, float slope) {
        fusetrain::check(N >= 0 && C >= 0 && S >= 0, "N, C, S must be >= 0");
        const float* xp = array_ptr<float>(x, "x", {N, C, S}, false);
        float* yp = array_ptr<float>(out, "out", {N, C, S}, true);
        const fusetrain::Epilogue e = epilogue_args(C, bias, bn_mean, bn_var, bn_weight, bn_bias, eps, act, slope);
        py::gil_scoped_release nogil;
        fusetrain::channel_affine_act(xp, yp, N, C, S, e);
      },
      py::arg("x"), py::arg("out"), py::arg("N"), py::arg("C"), py::arg("S"), py::arg("bias"), py::arg("bn_mean"),
      py::arg("bn_var"), py::arg("bn_weight"), py::arg("bn_bias"), py::arg("eps"), py::arg("act"), py::arg("slope"),
      "out (N, C, S) = act(alpha[c] * x + beta[c]) from a bias and an eval batchnorm; out may be x");
  m.def(
      "add_act",
      [](py::object a, py::object b, py::object out, int act, float slope) {
        fusetrain::check(act >= 0 && act <= 4, "act must be an activation code in [0, 4], got " + std::to_string(act));
        const int64_t n = array_size(a, "a");
        const float* ap = array_ptr<float>(a, "a", n, false);
        const float* bp = array_ptr<float>(b, "b", n, false);
        float* op = array_ptr<float>(out, "out", n, true);
        py::gil_scoped_release nogil;
        fusetrain::add_act(ap, bp, op, n, static_cast<fusetrain::Act>(act), slope);
      },
      py::arg("a"), py::arg("b"), py::arg("out"), py::arg("act"), py::arg("slope"),
      "out = act(a + b); out may be a or b");
}

}  // namespace fusetrain_py
