// Bindings for the optimizer updates and weight averaging.
#include "bind_util.h"
#include "fusetrain/optim.h"

namespace fusetrain_py {

void bind_optim(py::module_& m) {
  m.def("sgd_step", [](py::object p, py::object g, py::object buf, double lr, double momentum,
                       double dampening, double wd, bool nesterov, bool first, double scale) {
    int64_t n = array_size(p, "param");
    float* pp = array_ptr<float>(p, "param", n, true);
    const float* gp = array_ptr<float>(g, "grad", n, false);
    float* bp = array_ptr<float>(buf, "momentum_buffer", n, true, momentum == 0.0);
    py::gil_scoped_release nogil;
    fusetrain::sgd_step(pp, gp, bp, n, lr, momentum, dampening, wd, nesterov, first, scale);
  });
  m.def("adagrad_step", [](py::object p, py::object g, py::object sum, double clr, double wd,
                           double eps, double scale) {
    int64_t n = array_size(p, "param");
    float* pp = array_ptr<float>(p, "param", n, true);
    const float* gp = array_ptr<float>(g, "grad", n, false);
    float* sp = array_ptr<float>(sum, "state_sum", n, true);
    py::gil_scoped_release nogil;
    fusetrain::adagrad_step(pp, gp, sp, n, clr, wd, eps, scale);
  });
  m.def("rmsprop_step", [](py::object p, py::object g, py::object sq, py::object gavg, py::object buf,
                           double lr, double alpha, double eps, double wd, double momentum,
                           double scale) {
    int64_t n = array_size(p, "param");
    float* pp = array_ptr<float>(p, "param", n, true);
    const float* gp = array_ptr<float>(g, "grad", n, false);
    float* sp = array_ptr<float>(sq, "square_avg", n, true);
    float* ap = array_ptr<float>(gavg, "grad_avg", n, true, true);
    float* bp = array_ptr<float>(buf, "momentum_buffer", n, true, momentum <= 0.0);
    py::gil_scoped_release nogil;
    fusetrain::rmsprop_step(pp, gp, sp, ap, bp, n, lr, alpha, eps, wd, momentum, scale);
  });
  m.def("adam_step", [](py::object p, py::object g, py::object m1, py::object v, py::object vmax,
                        double lr, double b1, double b2, double eps, double wd, bool decoupled,
                        int64_t step, double scale) {
    int64_t n = array_size(p, "param");
    float* pp = array_ptr<float>(p, "param", n, true);
    const float* gp = array_ptr<float>(g, "grad", n, false);
    float* mp = array_ptr<float>(m1, "exp_avg", n, true);
    float* vp = array_ptr<float>(v, "exp_avg_sq", n, true);
    float* xp = array_ptr<float>(vmax, "max_exp_avg_sq", n, true, true);
    if (step < 1) throw std::invalid_argument("step must be >= 1");
    py::gil_scoped_release nogil;
    fusetrain::adam_step(pp, gp, mp, vp, xp, n, lr, b1, b2, eps, wd, decoupled, step, scale);
  });
  m.def("ema_update", [](py::object avg, py::object p, double decay) {
    int64_t n = array_size(avg, "avg");
    float* ap = array_ptr<float>(avg, "avg", n, true);
    const float* pp = array_ptr<float>(p, "param", n, false);
    py::gil_scoped_release nogil;
    fusetrain::ema_update(ap, pp, n, decay);
  });
}

}  // namespace fusetrain_py
