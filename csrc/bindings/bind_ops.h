// The ops both extension modules have: each registered here by one line, for whichever device
// policy (Host: _core, Cuda: _cuda) the module instantiates this with.
#pragma once
#include "bind_batchnorm.h"
#include "bind_conv.h"
#include "bind_dropout.h"
#include "bind_layernorm.h"
#include "bind_loss.h"
#include "bind_norm.h"
#include "bind_optim.h"
#include "bind_pooling.h"

namespace fusetrain_py {

template <class Dev>
void bind_ops(py::module_& m) {
  bind_optim<Dev>(m);
  bind_norm<Dev>(m);
  bind_batchnorm<Dev>(m);
  bind_layernorm<Dev>(m);
  bind_dropout<Dev>(m);
  bind_loss<Dev>(m);
  bind_conv<Dev>(m);
  bind_pooling<Dev>(m);
}

}  // namespace fusetrain_py
