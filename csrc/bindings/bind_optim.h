// Bindings of the optimizer updates and weight averaging (fusetrain/optim.h), for _core and _cuda.
// Every state buffer has param's size; the kernels refuse a missing one their mode needs.
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
        d.run(FT_KERNEL(sgd_step), std::tuple{out(d, param, "param", n), in(d, grad, "grad", n),
                                              out_opt(d, momentum_buffer, "momentum_buffer", n), n, lr, momentum,
                                              dampening, weight_decay, nesterov, first_step, grad_scale});
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
        d.run(FT_KERNEL(adagrad_step),
              std::tuple{out(d, param, "param", n), in(d, grad, "grad", n), out(d, state_sum, "state_sum", n), n, clr,
                         weight_decay, eps, grad_scale});
      },
      py::arg("param"), py::arg("grad"), py::arg("state_sum"), py::arg("clr"), py::arg("weight_decay"), py::arg("eps"),
      py::arg("grad_scale"), "torch.optim.Adagrad's update with the decayed rate clr, in place");
  m.def(
      "rmsprop_step",
      [](py::object param, py::object grad, py::object square_avg, py::object grad_avg, py::object momentum_buffer,
         double lr, double alpha, double eps, double weight_decay, double momentum, double grad_scale) {
        Dev d;
        const int64_t n = d.size(param, "param");
        d.run(FT_KERNEL(rmsprop_step),
              std::tuple{out(d, param, "param", n), in(d, grad, "grad", n), out(d, square_avg, "square_avg", n),
                         out_opt(d, grad_avg, "grad_avg", n), out_opt(d, momentum_buffer, "momentum_buffer", n), n, lr,
                         alpha, eps, weight_decay, momentum, grad_scale});
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
        d.run(FT_KERNEL(adam_step),
              std::tuple{out(d, param, "param", n), in(d, grad, "grad", n), out(d, exp_avg, "exp_avg", n),
                         out(d, exp_avg_sq, "exp_avg_sq", n), out_opt(d, max_exp_avg_sq, "max_exp_avg_sq", n), n, lr,
                         beta1, beta2, eps, weight_decay, decoupled, step, grad_scale});
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
        d.run(FT_KERNEL(ema_update), std::tuple{out(d, avg, "avg", n), in(d, param, "param", n), n, decay});
      },
      py::arg("avg"), py::arg("param"), py::arg("decay"), "avg += (1 - decay) * (param - avg), in place");
}

}  // namespace fusetrain_py
