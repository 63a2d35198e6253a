// Bindings of the optimizer updates and weight averaging (fusetrain/optim.h), for _core and _cuda.
#pragma once
#include "arrays.h"
#include "fusetrain/optim.h"

namespace fusetrain_py {

template <class Dev>
void bind_optim(py::module_& m) {
  m.def(
      "sgd_step",
      [](py::object param, py::object grad, py::object momentum_buffer, double lr, double momentum, double dampening,
         double weight_decay, bool nesterov, bool first_step, double grad_scale) {
        Dev d;
        const int64_t n = d.size(param, "param");
        float* p = out<float>(d, param, "param", n);
        const float* g = in<float>(d, grad, "grad", n);
        float* buf = out_opt<float>(d, momentum_buffer, "momentum_buffer", n);
        d.launch([&](auto... stream) {
          fusetrain::sgd_step(p, g, buf, n, lr, momentum, dampening, weight_decay, nesterov, first_step, grad_scale,
                              stream...);
        });
      },
      py::arg("param"), py::arg("grad"), py::arg("momentum_buffer"), py::arg("lr"), py::arg("momentum"),
      py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"), py::arg("first_step"), py::arg("grad_scale"),
      "torch.optim.SGD's update of param and momentum_buffer (None when momentum == 0), in place");
  m.def(
      "adagrad_step",
      [](py::object param, py::object grad, py::object state_sum, double clr, double weight_decay, double eps,
         double grad_scale) {
        Dev d;
        const int64_t n = d.size(param, "param");
        float* p = out<float>(d, param, "param", n);
        const float* g = in<float>(d, grad, "grad", n);
        float* sum = out<float>(d, state_sum, "state_sum", n);
        d.launch([&](auto... stream) {
          fusetrain::adagrad_step(p, g, sum, n, clr, weight_decay, eps, grad_scale, stream...);
        });
      },
      py::arg("param"), py::arg("grad"), py::arg("state_sum"), py::arg("clr"), py::arg("weight_decay"), py::arg("eps"),
      py::arg("grad_scale"), "torch.optim.Adagrad's update with the decayed rate clr, in place");
  m.def(
      "rmsprop_step",
      [](py::object param, py::object grad, py::object square_avg, py::object grad_avg, py::object momentum_buffer,
         double lr, double alpha, double eps, double weight_decay, double momentum, double grad_scale) {
        Dev d;
        const int64_t n = d.size(param, "param");
        float* p = out<float>(d, param, "param", n);
        const float* g = in<float>(d, grad, "grad", n);
        float* sq = out<float>(d, square_avg, "square_avg", n);
        float* gavg = out_opt<float>(d, grad_avg, "grad_avg", n);
        float* buf = out_opt<float>(d, momentum_buffer, "momentum_buffer", n);
        d.launch([&](auto... stream) {
          fusetrain::rmsprop_step(p, g, sq, gavg, buf, n, lr, alpha, eps, weight_decay, momentum, grad_scale,
                                  stream...);
        });
      },
      py::arg("param"), py::arg("grad"), py::arg("square_avg"), py::arg("grad_avg"), py::arg("momentum_buffer"),
      py::arg("lr"), py::arg("alpha"), py::arg("eps"), py::arg("weight_decay"), py::arg("momentum"),
      py::arg("grad_scale"), "torch.optim.RMSprop's update (centered when grad_avg is given), in place");
  m.def(
      "adam_step",
      [](py::object param, py::object grad, py::object exp_avg, py::object exp_avg_sq, py::object max_exp_avg_sq,
         double lr, double beta1, double beta2, double eps, double weight_decay, bool decoupled, int64_t step,
         double grad_scale) {
        Dev d;
        const int64_t n = d.size(param, "param");
        float* p = out<float>(d, param, "param", n);
        const float* g = in<float>(d, grad, "grad", n);
        float* m1 = out<float>(d, exp_avg, "exp_avg", n);
        float* v = out<float>(d, exp_avg_sq, "exp_avg_sq", n);
        float* vmax = out_opt<float>(d, max_exp_avg_sq, "max_exp_avg_sq", n);
        d.launch([&](auto... stream) {
          fusetrain::adam_step(p, g, m1, v, vmax, n, lr, beta1, beta2, eps, weight_decay, decoupled, step, grad_scale,
                               stream...);
        });
      },
      py::arg("param"), py::arg("grad"), py::arg("exp_avg"), py::arg("exp_avg_sq"), py::arg("max_exp_avg_sq"),
      py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("decoupled"),
      py::arg("step"), py::arg("grad_scale"),
      "torch.optim.Adam's (AdamW's when decoupled) update; AMSGrad when max_exp_avg_sq is given; in place");
  m.def(
      "ema_update",
      [](py::object avg, py::object param, double decay) {
        Dev d;
        const int64_t n = d.size(avg, "avg");
        float* a = out<float>(d, avg, "avg", n);
        const float* p = in<float>(d, param, "param", n);
        d.launch([&](auto... stream) { fusetrain::ema_update(a, p, n, decay, stream...); });
      },
      py::arg("avg"), py::arg("param"), py::arg("decay"), "avg += (1 - decay) * (param - avg), in place");
}

}  // namespace fusetrain_py
