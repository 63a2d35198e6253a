// Bindings for norms, scaling, clamping and non-finite counting.
#include "bind_util.h"
#include "fusetrain/norm.h"

namespace fusetrain_py {

void bind_norm(py::module_& m) {
  m.def("pow_sum", [](py::object x, double p) {
    int64_t n = array_size(x, "x");
    const float* xp = array_ptr<float>(x, "x", n, false);
    py::gil_scoped_release nogil;
    return fusetrain::pow_sum(xp, n, p);
  });
  m.def("scale_inplace", [](py::object x, double s) {
    int64_t n = array_size(x, "x");
    float* xp = array_ptr<float>(x, "x", n, true);
    py::gil_scoped_release nogil;
    fusetrain::scale_inplace(xp, n, static_cast<float>(s));
  });
  m.def("clamp_inplace", [](py::object x, double lo, double hi) {
    int64_t n = array_size(x, "x");
    float* xp = array_ptr<float>(x, "x", n, true);
    py::gil_scoped_release nogil;
    fusetrain::clamp_inplace(xp, n, static_cast<float>(lo), static_cast<float>(hi));
  });
  m.def("count_nonfinite", [](py::object x) {
    int64_t n = array_size(x, "x");
    const float* xp = array_ptr<float>(x, "x", n, false);
    py::gil_scoped_release nogil;
    return fusetrain::count_nonfinite(xp, n);
  });
}

}  // namespace fusetrain_py
