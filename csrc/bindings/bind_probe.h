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
        const float* s = in<float>(d, src, "src", n);
        float* o = out<float>(d, dst, "dst", n);
        d.launch([&] { fusetrain::probe_copy(s, o, n); });
      },
      py::arg("src"), py::arg("dst"), "dst = src (8 bytes moved per element)");
  m.def(
      "probe_triad",
      [](py::object a, py::object b, py::object c, double s) {
        Host d;
        const int64_t n = d.size(a, "a");
        float* ap = out<float>(d, a, "a", n);
        const float* bp = in<float>(d, b, "b", n);
        const float* cp = in<float>(d, c, "c", n);
        d.launch([&] { fusetrain::probe_triad(ap, bp, cp, float(s), n); });
      },
      py::arg("a"), py::arg("b"), py::arg("c"), py::arg("s"), "a = b + s*c (12 bytes moved per element)");
  m.def(
      "probe_update",
      [](py::list outs, py::object inp) {
        fusetrain::check(outs.size() >= 1 && outs.size() <= 4, "probe_update takes 1 to 4 outputs");
        Host d;
        const int64_t n = d.size(inp, "inp");
        const float* ip = in<float>(d, inp, "inp", n);
        float* ptrs[4];
        for (size_t j = 0; j < outs.size(); ++j) ptrs[j] = out<float>(d, outs[j], "outs[j]", n);
        const int nout = int(outs.size());
        d.launch([&] { fusetrain::probe_update(ptrs, nout, ip, n); });
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
