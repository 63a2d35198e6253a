// Bindings of batch normalization (fusetrain/batchnorm.h), for _core and _cuda.
#pragma once
#include "arrays.h"
#include "fusetrain/batchnorm.h"

namespace fusetrain_py {

template <class Dev>
void bind_batchnorm(py::module_& m) {
  m.def(
      "batchnorm_forward_train",
      [](py::object x, py::object weight, py::object bias, py::object out_, py::object mean, py::object invstd,
         py::object running_mean, py::object running_var, int64_t N, int64_t C, int64_t S, double eps, double momentum,
         bool relu, double dropout_p, uint64_t seed, uint64_t offset) {
        fusetrain::check_batchnorm_train(N, C, S, relu, dropout_p, offset);
        fusetrain::check(running_mean.is_none() == running_var.is_none(),
                         "running_mean and running_var must both be given or both be None");
        Dev d;
        d.run(FT_KERNEL(batchnorm_forward_train),
              std::tuple{in(d, x, "x", {N, C, S}), in_opt(d, weight, "weight", C), in_opt(d, bias, "bias", C),
                         out(d, out_, "out", {N, C, S}), out(d, mean, "mean", C), out(d, invstd, "invstd", C),
                         out_opt(d, running_mean, "running_mean", C), out_opt(d, running_var, "running_var", C), N, C,
                         S, eps, momentum, relu, dropout_p, seed, offset});
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("out"), py::arg("mean"), py::arg("invstd"),
      py::arg("running_mean"), py::arg("running_var"), py::arg("N"), py::arg("C"), py::arg("S"), py::arg("eps"),
      py::arg("momentum"), py::arg("relu"), py::arg("dropout_p"), py::arg("seed"), py::arg("offset"),
      "Training forward over x (N, C, S): batch statistics, running statistics updated, optional ReLU + dropout");
  m.def(
      "batchnorm_forward_eval",
      [](py::object x, py::object weight, py::object bias, py::object running_mean, py::object running_var,
         py::object out_, py::object invstd, int64_t N, int64_t C, int64_t S, double eps, bool relu) {
        fusetrain::check_batchnorm_sizes(N, C, S);
        Dev d;
        d.run(FT_KERNEL(batchnorm_forward_eval),
              std::tuple{in(d, x, "x", {N, C, S}), in_opt(d, weight, "weight", C), in_opt(d, bias, "bias", C),
                         in(d, running_mean, "running_mean", C), in(d, running_var, "running_var", C),
                         out(d, out_, "out", {N, C, S}), out(d, invstd, "invstd", C), N, C, S, eps, relu});
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("running_mean"), py::arg("running_var"), py::arg("out"),
      py::arg("invstd"), py::arg("N"), py::arg("C"), py::arg("S"), py::arg("eps"), py::arg("relu"),
      "Eval forward over x (N, C, S) with the running statistics, optional ReLU");
  m.def(
      "batchnorm_backward",
      [](py::object grad_out, py::object x, py::object out_, py::object weight, py::object mean, py::object invstd,
         py::object grad_input, py::object grad_weight, py::object grad_bias, int64_t N, int64_t C, int64_t S,
         bool relu, double dropout_scale, bool training) {
        fusetrain::check_batchnorm_sizes(N, C, S);
        Dev d;
        // The forward output is read only through the fused ReLU.
        d.run(FT_KERNEL(batchnorm_backward),
              std::tuple{in(d, grad_out, "grad_out", {N, C, S}), in(d, x, "x", {N, C, S}),
                         relu ? in(d, out_, "out", {N, C, S}) : in_opt(d, out_, "out", {N, C, S}),
                         in_opt(d, weight, "weight", C), in(d, mean, "mean", C), in(d, invstd, "invstd", C),
                         out(d, grad_input, "grad_input", {N, C, S}), out_opt(d, grad_weight, "grad_weight", C),
                         out_opt(d, grad_bias, "grad_bias", C), N, C, S, relu, dropout_scale, training});
      },
      py::arg("grad_out"), py::arg("x"), py::arg("out"), py::arg("weight"), py::arg("mean"), py::arg("invstd"),
      py::arg("grad_input"), py::arg("grad_weight"), py::arg("grad_bias"), py::arg("N"), py::arg("C"), py::arg("S"),
      py::arg("relu"), py::arg("dropout_scale"), py::arg("training"),
      "Backward: grad_input overwritten, grad_weight and grad_bias accumulated (+=) when given");
}

}  // namespace fusetrain_py
