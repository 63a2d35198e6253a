// Bindings of the losses (fusetrain/loss.h), for _core and _cuda.
#pragma once
#include "arrays.h"
#include "fusetrain/loss.h"

namespace fusetrain_py {

template <class Dev>
void bind_loss(py::module_& m) {
  m.def(
      "softmax_cross_entropy",
      [](py::object logits, py::object labels, py::object grad_input, int64_t N, int64_t K, double grad_scale) {
        fusetrain::check_softmax_cross_entropy_sizes(N, K);
        Dev d;
        return d.run(FT_KERNEL(softmax_cross_entropy),
                     std::tuple{in(d, logits, "logits", {N, K}), in<int64_t>(d, labels, "labels", N),
                                out_opt(d, grad_input, "grad_input", {N, K}), N, K, grad_scale});
      },
      py::arg("logits"), py::arg("labels"), py::arg("grad_input"), py::arg("N"), py::arg("K"), py::arg("grad_scale"),
      "The summed loss of logits (N, K) against int64 labels (N,); grad_input = (softmax - onehot) * grad_scale");
  m.def(
      "mse_loss",
      [](py::object pred, py::object target, py::object grad_input, double grad_scale) {
        Dev d;
        const int64_t n = d.size(pred, "pred");
        return d.run(FT_KERNEL(mse_loss), std::tuple{in(d, pred, "pred", n), in(d, target, "target", n),
                                                     out_opt(d, grad_input, "grad_input", n), n, float(grad_scale)});
      },
      py::arg("pred"), py::arg("target"), py::arg("grad_input"), py::arg("grad_scale"),
      "The summed squared error of pred against target (same size); grad_input = (pred - target) * grad_scale");
}

}  // namespace fusetrain_py
