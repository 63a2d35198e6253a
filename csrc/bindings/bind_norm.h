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
        const float* xp = in<float>(d, x, "x", n);
        return d.launch([&](auto... stream) { return fusetrain::pow_sum(xp, n, p, stream...); });
      },
      py::arg("x"), py::arg("p"), "sum(|x|^p) (max|x| for p = inf), bitwise deterministic");
  m.def(
      "scale_inplace",
      [](py::object x, double s) {
        Dev d;
        const int64_t n = d.size(x, "x");
        float* xp = out<float>(d, x, "x", n);
        d.launch([&](auto... stream) { fusetrain::scale_inplace(xp, n, float(s), stream...); });
      },
      py::arg("x"), py::arg("s"), "x *= s");
  m.def(
      "clamp_inplace",
      [](py::object x, double lo, double hi) {
        Dev d;
        const int64_t n = d.size(x, "x");
        float* xp = out<float>(d, x, "x", n);
        d.launch([&](auto... stream) { fusetrain::clamp_inplace(xp, n, float(lo), float(hi), stream...); });
      },
      py::arg("x"), py::arg("lo"), py::arg("hi"), "x = min(max(x, lo), hi); NaN stays NaN");
  m.def(
      "count_nonfinite",
      [](py::object x) {
        Dev d;
        const int64_t n = d.size(x, "x");
        const float* xp = in<float>(d, x, "x", n);
        return d.launch([&](auto... stream) { return fusetrain::count_nonfinite(xp, n, stream...); });
      },
      py::arg("x"), "the number of NaN and infinite values in x");
}

}  // namespace fusetrain_py
