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
        Dev d;
        const int64_t n = dims({N, C, S}, "x");
        const float* xp = in<float>(d, x, "x", n);
        const float* wp = in_opt<float>(d, weight, "weight", C);
        const float* bp = in_opt<float>(d, bias, "bias", C);
        float* yp = out<float>(d, out_, "out", n);
        float* mp = out<float>(d, mean, "mean", C);
        float* ip = out<float>(d, invstd, "invstd", C);
        float* rmp = out_opt<float>(d, running_mean, "running_mean", C);
        float* rvp = out_opt<float>(d, running_var, "running_var", C);
        fusetrain::check((rmp == nullptr) == (rvp == nullptr),
                         "running_mean and running_var must both be given or both be None");
        d.launch([&](auto... stream) {
          fusetrain::batchnorm_forward_train(xp, wp, bp, yp, mp, ip, rmp, rvp, N, C, S, eps, momentum, relu, dropout_p,
                                             seed, offset, stream...);
        });
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
        const int64_t n = dims({N, C, S}, "x");
        const float* xp = in<float>(d, x, "x", n);
        const float* wp = in_opt<float>(d, weight, "weight", C);
        const float* bp = in_opt<float>(d, bias, "bias", C);
        const float* rmp = in<float>(d, running_mean, "running_mean", C);
        const float* rvp = in<float>(d, running_var, "running_var", C);
        float* yp = out<float>(d, out_, "out", n);
        float* ip = out<float>(d, invstd, "invstd", C);
        d.launch([&](auto... stream) {
          fusetrain::batchnorm_forward_eval(xp, wp, bp, rmp, rvp, yp, ip, N, C, S, eps, relu, stream...);
        });
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
        const int64_t n = dims({N, C, S}, "x");
        const float* dyp = in<float>(d, grad_out, "grad_out", n);
        const float* xp = in<float>(d, x, "x", n);
        const float* yp = relu ? in<float>(d, out_, "out", n) : in_opt<float>(d, out_, "out", n);
        const float* wp = in_opt<float>(d, weight, "weight", C);
        const float* mp = in<float>(d, mean, "mean", C);
        const float* ip = in<float>(d, invstd, "invstd", C);
        float* dxp = out<float>(d, grad_input, "grad_input", n);
        float* dwp = out_opt<float>(d, grad_weight, "grad_weight", C);
        float* dbp = out_opt<float>(d, grad_bias, "grad_bias", C);
        d.launch([&](auto... stream) {
          fusetrain::batchnorm_backward(dyp, xp, yp, wp, mp, ip, dxp, dwp, dbp, N, C, S, relu, dropout_scale, training,
                                        stream...);
        });
      },
      py::arg("grad_out"), py::arg("x"), py::arg("out"), py::arg("weight"), py::arg("mean"), py::arg("invstd"),
      py::arg("grad_input"), py::arg("grad_weight"), py::arg("grad_bias"), py::arg("N"), py::arg("C"), py::arg("S"),
      py::arg("relu"), py::arg("dropout_scale"), py::arg("training"),
      "Backward: grad_input overwritten, grad_weight and grad_bias accumulated (+=) when given");
}

}  // namespace fusetrain_py
