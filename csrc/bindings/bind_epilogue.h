// Bindings of the eval-mode epilogues (fusetrain/epilogue.h: per-channel scale, shift and
// activation; the residual add), _core only: the compiled inference path runs on host arrays.
#pragma once
#include <string>

#include "arrays.h"
#include "fusetrain/epilogue.h"

namespace fusetrain_py {

// The arguments of an eval epilogue for C channels: optional (C,) arrays.
inline fusetrain::Epilogue epilogue_args(Host& d, int64_t C, const py::object& bias, const py::object& mean,
                                         const py::object& var, const py::object& w, const py::object& b, double eps,
                                         int act, float slope) {
  fusetrain::check(mean.is_none() == var.is_none(), "bn_mean and bn_var must both be given or both be None");
  fusetrain::check(mean.is_none() ? (w.is_none() && b.is_none()) : (w.is_none() == b.is_none()),
                   "bn_weight and bn_bias must both be given (with bn_mean and bn_var) or both be None");
  fusetrain::check(eps > 0, "eps must be > 0");
  fusetrain::Epilogue e;
  e.act = fusetrain::act_from_code(act);
  e.bias = in_opt(d, bias, "bias", C);
  e.mean = in_opt(d, mean, "bn_mean", C);
  e.var = in_opt(d, var, "bn_var", C);
  e.w = in_opt(d, w, "bn_weight", C);
  e.b = in_opt(d, b, "bn_bias", C);
  e.eps = eps;
  e.slope = slope;
  return e;
}

inline void bind_epilogue(py::module_& m) {
  m.def(
      "channel_affine_act",
      [](py::object x, py::object out_, int64_t N, int64_t C, int64_t S, py::object bias, py::object bn_mean,
         py::object bn_var, py::object bn_weight, py::object bn_bias, double eps, int act, float slope) {
        fusetrain::check(N >= 0 && C >= 0 && S >= 0, "N, C, S must be >= 0");
        Host d;
        d.run(FT_KERNEL(channel_affine_act),
              std::tuple{in(d, x, "x", {N, C, S}), out(d, out_, "out", {N, C, S}), N, C, S,
                         epilogue_args(d, C, bias, bn_mean, bn_var, bn_weight, bn_bias, eps, act, slope)});
      },
      py::arg("x"), py::arg("out"), py::arg("N"), py::arg("C"), py::arg("S"), py::arg("bias"), py::arg("bn_mean"),
      py::arg("bn_var"), py::arg("bn_weight"), py::arg("bn_bias"), py::arg("eps"), py::arg("act"), py::arg("slope"),
      "out (N, C, S) = act(alpha[c] * x + beta[c]) from a bias and an eval batchnorm; out may be x");
  m.def(
      "add_act",
      [](py::object a, py::object b, py::object out_, int act, float slope) {
        const fusetrain::Act code = fusetrain::act_from_code(act);
        Host d;
        const int64_t n = d.size(a, "a");
        d.run(FT_KERNEL(add_act),
              std::tuple{in(d, a, "a", n), in(d, b, "b", n), out(d, out_, "out", n), n, code, slope});
      },
      py::arg("a"), py::arg("b"), py::arg("out"), py::arg("act"), py::arg("slope"),
      "out = act(a + b); out may be a or b");
}

}  // namespace fusetrain_py
