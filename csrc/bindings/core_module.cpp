// The fusetrain._core extension module: CPU kernels bound with pybind11, GIL released in each call.
#include "bind_util.h"
#include "fusetrain/parallel.h"

namespace py = pybind11;
using namespace fusetrain_py;

PYBIND11_MODULE(_core, m) {
  m.doc() = "fusetrain fused CPU kernels (C++, on fusetrain's own thread pool)";
  m.def("num_threads", &fusetrain::num_threads, "Threads a kernel may use (the calling thread included)");
  m.def("set_num_threads", &fusetrain::set_num_threads, py::arg("n"), "Sets the threads kernels may use (n >= 1)");
  m.def("default_num_threads", &fusetrain::default_num_threads,
        "OMP_NUM_THREADS when set, else the CPUs of the affinity mask lowered to the cgroup CPU quota");
  m.def("spin_us", &fusetrain::spin_us, "Microseconds an idle pool worker spins before it sleeps");
  m.def("set_spin_us", &fusetrain::set_spin_us, py::arg("us"),
        "Sets how long idle pool workers spin (0: sleep at once)");
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
