// Bindings of the machine probes (fusetrain/probe.h), _core only: the benchmarks' yardsticks.
#pragma once
#include "arrays.h"
#include "fusetrain/probe.h"

namespace fusetrain_py {

inline void bind_probe(py::module_& m) {
  m.def(
      "probe_copy",
      [](py::object src, py::object dst) {
        Host d;
        const int64_t n = d.size(src, "src");
        d.run(FT_KERNEL(probe_copy), std::tuple{in(d, src, "src", n), out(d, dst, "dst", n), n});
      },
      py::arg("src"), py::arg("dst"), "dst = src (8 bytes moved per element)");
  m.def(
      "probe_triad",
      [](py::object a, py::object b, py::object c, double s) {
        Host d;
        const int64_t n = d.size(a, "a");
        d.run(FT_KERNEL(probe_triad), std::tuple{out(d, a, "a", n), in(d, b, "b", n), in(d, c, "c", n), float(s), n});
      },
      py::arg("a"), py::arg("b"), py::arg("c"), py::arg("s"), "a = b + s*c (12 bytes moved per element)");
  m.def(
      "probe_update",
      [](py::list outs, py::object inp) {
        fusetrain::check(outs.size() >= 1 && outs.size() <= 4, "probe_update takes 1 to 4 outputs");
        Host d;
        const int64_t n = d.size(inp, "inp");
        const float* ip = in(d, inp, "inp", n);
        float* ptrs[4];
        for (size_t j = 0; j < outs.size(); ++j) ptrs[j] = out(d, outs[j], "outs[j]", n);
        d.run(FT_KERNEL(probe_update), std::tuple{static_cast<float* const*>(ptrs), int(outs.size()), ip, n});
      },
      py::arg("outs"), py::arg("inp"), "outs[j] += inp for 1 to 4 outputs: an optimizer's memory streams");
  m.def(
      "probe_fma",
      [](int64_t iters) {
        py::gil_scoped_release nogil;
        return fusetrain::probe_fma(iters);
      },
      py::arg("iters"), "Every pool thread runs `iters` rounds of register multiply-adds; returns the FLOPs done");
}

}  // namespace fusetrain_py
