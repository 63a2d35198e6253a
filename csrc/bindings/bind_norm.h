// Bindings of the norms, scaling, clamping and non-finite counting (fusetrain/norm.h), for _core
// and _cuda.
#pragma once
#include "arrays.h"
#include "fusetrain/norm.h"

namespace fusetrain_py {

template <class Dev>
void bind_norm(py::module_& m) {
  m.def(
      "pow_sum",
      [](py::object x, double p) {
        Dev d;
        const int64_t n = d.size(x, "x");
        return d.run(FT_KERNEL(pow_sum), std::tuple{in(d, x, "x", n), n, p});
      },
      py::arg("x"), py::arg("p"), "sum(|x|^p) (max|x| for p = inf), bitwise deterministic");
  m.def(
      "scale_inplace",
      [](py::object x, double s) {
        Dev d;
        const int64_t n = d.size(x, "x");
        d.run(FT_KERNEL(scale_inplace), std::tuple{out(d, x, "x", n), n, float(s)});
      },
      py::arg("x"), py::arg("s"), "x *= s");
  m.def(
      "clamp_inplace",
      [](py::object x, double lo, double hi) {
        Dev d;
        const int64_t n = d.size(x, "x");
        d.run(FT_KERNEL(clamp_inplace), std::tuple{out(d, x, "x", n), n, float(lo), float(hi)});
      },
      py::arg("x"), py::arg("lo"), py::arg("hi"), "x = min(max(x, lo), hi); NaN stays NaN");
  m.def(
      "count_nonfinite",
      [](py::object x) {
        Dev d;
        const int64_t n = d.size(x, "x");
        return d.run(FT_KERNEL(count_nonfinite), std::tuple{in(d, x, "x", n), n});
      },
      py::arg("x"), "the number of NaN and infinite values in x");
}

}  // namespace fusetrain_py
