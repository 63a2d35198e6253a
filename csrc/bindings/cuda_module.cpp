// The fusetrain._cuda extension module: the GPU kernels under the same names and signatures as
// _core's (the bindings, bind_<op>.h, are shared), reading CuPy arrays through
// __cuda_array_interface__ and enqueuing on the stream it names. Importing it touches no GPU: the
// CUDA runtime (linked statically) loads the driver on the first kernel call.
#include "bind_batchnorm.h"
#include "bind_conv.h"
#include "bind_dropout.h"
#include "bind_layernorm.h"
#include "bind_loss.h"
#include "bind_norm.h"
#include "bind_optim.h"
#include "bind_pooling.h"
#include "cuda_arrays.h"

using namespace fusetrain_py;

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fusetrain fused CUDA kernels on CuPy arrays (the signatures of fusetrain._core)";
  bind_optim<Cuda>(m);
  bind_norm<Cuda>(m);
  bind_batchnorm<Cuda>(m);
  bind_layernorm<Cuda>(m);
  bind_dropout<Cuda>(m);
  bind_loss<Cuda>(m);
  bind_conv<Cuda>(m);
  bind_pooling<Cuda>(m);
}
