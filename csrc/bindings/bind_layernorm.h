// Bindings of layer normalization (fusetrain/layernorm.h), for _core and _cuda.
#pragma once
#include "arrays.h"
#include "fusetrain/layernorm.h"

namespace fusetrain_py {

template <class Dev>
void bind_layernorm(py::module_& m) {
  m.def(
      "layernorm_forward",
      [](py::object x, py::object weight, py::object bias, py::object out_, py::object mean, py::object rstd, int64_t N,
         int64_t D, double eps) {
        fusetrain::check_layernorm_sizes(N, D);
        fusetrain::check(weight.is_none() == bias.is_none(), "weight and bias must both be given or both be None");
        Dev d;
        d.run(FT_KERNEL(layernorm_forward),
              std::tuple{in(d, x, "x", {N, D}), in_opt(d, weight, "weight", D), in_opt(d, bias, "bias", D),
                         out(d, out_, "out", {N, D}), out(d, mean, "mean", N), out(d, rstd, "rstd", N), N, D, eps});
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("out"), py::arg("mean"), py::arg("rstd"), py::arg("N"),
      py::arg("D"), py::arg("eps"), "Forward over the rows of x (N, D); mean and rstd (N,) saved for backward");
  m.def(
      "layernorm_backward",
      [](py::object grad_out, py::object x, py::object weight, py::object mean, py::object rstd, py::object grad_input,
         py::object grad_weight, py::object grad_bias, int64_t N, int64_t D) {
        fusetrain::check_layernorm_sizes(N, D);
        Dev d;
        d.run(FT_KERNEL(layernorm_backward),
              std::tuple{in(d, grad_out, "grad_out", {N, D}), in(d, x, "x", {N, D}), in_opt(d, weight, "weight", D),
                         in(d, mean, "mean", N), in(d, rstd, "rstd", N), out(d, grad_input, "grad_input", {N, D}),
                         out_opt(d, grad_weight, "grad_weight", D), out_opt(d, grad_bias, "grad_bias", D), N, D});
      },
      py::arg("grad_out"), py::arg("x"), py::arg("weight"), py::arg("mean"), py::arg("rstd"), py::arg("grad_input"),
      py::arg("grad_weight"), py::arg("grad_bias"), py::arg("N"), py::arg("D"),
      "Backward: grad_input overwritten (may be grad_out), grad_weight and grad_bias accumulated (+=) when given");
}

}  // namespace fusetrain_py
