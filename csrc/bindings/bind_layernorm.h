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
        Dev d;
        const float* xp = in<float>(d, x, "x", dims({N, D}, "x"));
        const float* wp = in_opt<float>(d, weight, "weight", D);
        const float* bp = in_opt<float>(d, bias, "bias", D);
        fusetrain::check((wp == nullptr) == (bp == nullptr), "weight and bias must both be given or both be None");
        float* yp = out<float>(d, out_, "out", dims({N, D}, "out"));
        float* mp = out<float>(d, mean, "mean", N);
        float* rp = out<float>(d, rstd, "rstd", N);
        d.launch([&](auto... stream) { fusetrain::layernorm_forward(xp, wp, bp, yp, mp, rp, N, D, eps, stream...); });
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("out"), py::arg("mean"), py::arg("rstd"), py::arg("N"),
      py::arg("D"), py::arg("eps"), "Forward over the rows of x (N, D); mean and rstd (N,) saved for backward");
  m.def(
      "layernorm_backward",
      [](py::object grad_out, py::object x, py::object weight, py::object mean, py::object rstd, py::object grad_input,
         py::object grad_weight, py::object grad_bias, int64_t N, int64_t D) {
        fusetrain::check_layernorm_sizes(N, D);
        Dev d;
        const float* dyp = in<float>(d, grad_out, "grad_out", dims({N, D}, "grad_out"));
        const float* xp = in<float>(d, x, "x", dims({N, D}, "x"));
        const float* wp = in_opt<float>(d, weight, "weight", D);
        const float* mp = in<float>(d, mean, "mean", N);
        const float* rp = in<float>(d, rstd, "rstd", N);
        float* dxp = out<float>(d, grad_input, "grad_input", dims({N, D}, "grad_input"));
        float* dwp = out_opt<float>(d, grad_weight, "grad_weight", D);
        float* dbp = out_opt<float>(d, grad_bias, "grad_bias", D);
        d.launch([&](auto... stream) {
          fusetrain::layernorm_backward(dyp, xp, wp, mp, rp, dxp, dwp, dbp, N, D, stream...);
        });
      },
      py::arg("grad_out"), py::arg("x"), py::arg("weight"), py::arg("mean"), py::arg("rstd"), py::arg("grad_input"),
      py::arg("grad_weight"), py::arg("grad_bias"), py::arg("N"), py::arg("D"),
      "Backward: grad_input overwritten (may be grad_out), grad_weight and grad_bias accumulated (+=) when given");
}

}  // namespace fusetrain_py
