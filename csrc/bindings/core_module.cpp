// The fusetrain._core extension module: CPU kernels bound with pybind11, GIL released in each call.
#include <omp.h>

#include "bind_util.h"

namespace py = pybind11;
using namespace fusetrain_py;

PYBIND11_MODULE(_core, m) {
  m.doc() = "fusetrain fused CPU kernels (C++/OpenMP)";
  m.def("num_threads", []() { return omp_get_max_threads(); }, "OpenMP threads a kernel uses");
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw std::invalid_argument("num_threads must be >= 1, got " + std::to_string(n));
    omp_set_num_threads(n);
  }, py::arg("n"));
  bind_optim(m);
  bind_norm(m);
  bind_batchnorm(m);
  bind_layernorm(m);
  bind_dropout(m);
  bind_loss(m);
  bind_probe(m);
  bind_conv(m);
  bind_gemm(m);
}
