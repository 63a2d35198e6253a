// The fusetrain._cuda extension module: the GPU kernels under the same names and signatures as
// _core's (the bindings, bind_<op>.h, are shared), reading CuPy arrays through
// __cuda_array_interface__ and enqueuing on the stream it names. Importing it touches no GPU: the
// CUDA runtime (linked statically) loads the driver on the first kernel call.
#include "bind_ops.h"
#include "cuda_arrays.h"

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fusetrain fused CUDA kernels on CuPy arrays (the signatures of fusetrain._core)";
  fusetrain_py::bind_ops<fusetrain_py::Cuda>(m);
}
