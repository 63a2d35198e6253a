// The fusetrain._core extension module: the CPU kernels (GIL released in each call) -- the ops
// both modules have (bind_ops.h), then the CPU's own -- and the thread pool's controls.
#include <vector>

#include "arrays.h"
#include "bind_epilogue.h"
#include "bind_gemm.h"
#include "bind_ops.h"
#include "bind_probe.h"
#include "fusetrain/conv.h"
#include "fusetrain/parallel.h"

namespace py = pybind11;
using namespace fusetrain_py;

namespace {

void bind_threads(py::module_& m) {
  m.def("num_threads", &fusetrain::num_threads, "Threads a kernel may use (the calling thread included)");
  m.def("set_num_threads", &fusetrain::set_num_threads, py::arg("n"), "Sets the threads kernels may use (n >= 1)");
  m.def("default_num_threads", &fusetrain::default_num_threads,
        "OMP_NUM_THREADS when set, else the CPUs of the affinity mask lowered to the cgroup CPU quota");
  m.def("spin_us", &fusetrain::spin_us, "Microseconds an idle pool worker spins before it sleeps");
  m.def("set_spin_us", &fusetrain::set_spin_us, py::arg("us"),
        "Sets how long idle pool workers spin (0: sleep at once)");
  m.def(
      "_parallel_check",
      [](int64_t ntasks, int64_t fail_at) {
        // Exercises the pool: sums task indices through per-task slots; task fail_at throws.
        std::vector<int64_t> slot(static_cast<size_t>(ntasks > 0 ? ntasks : 0), 0);
        {
          py::gil_scoped_release nogil;
          fusetrain::parallel_tasks(ntasks, fusetrain::num_threads(), [&](int64_t t, int) {
            if (t == fail_at) throw std::invalid_argument("task " + std::to_string(t) + " failed");
            slot[size_t(t)] = t + 1;
          });
        }
        int64_t s = 0;
        for (int64_t v : slot) s += v;
        return s;
      },
      py::arg("ntasks"), py::arg("fail_at") = -1, "Pool self-check for the tests: sum of 1..ntasks, or an error");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fusetrain fused CPU kernels (C++, on fusetrain's own thread pool)";
  // Reads FUSETRAIN_CPU_ISA: a value that names no instruction set, or one this CPU lacks, fails
  // the import rather than run other kernels than the ones asked for.
  fusetrain::conv2d_direct_isa();
  bind_threads(m);
  bind_ops<Host>(m);
  bind_gemm(m);
  bind_epilogue(m);
  bind_probe(m);
}
