// Helpers for the _core bindings: turn a numpy array argument into a typed pointer after
// re-checking dtype, contiguity, writability and size (never converting or copying).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "fusetrain/common.h"

#include <cstdint>
#include <stdexcept>
#include <string>

namespace fusetrain_py {
namespace py = pybind11;

template <class T>
T* array_ptr(const py::object& obj, const char* name, int64_t expect_size, bool writable,
             bool allow_none = false) {
  if (obj.is_none()) {
    if (allow_none) return nullptr;
    throw std::invalid_argument(std::string(name) + " must be an array, got None");
  }
  if (!py::isinstance<py::array>(obj))
    throw std::invalid_argument(std::string(name) + " must be a numpy array");
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().equal(py::dtype::of<T>()))
    throw std::invalid_argument(std::string(name) + " has dtype " +
                                std::string(py::str(a.dtype())) + ", expected " +
                                std::string(py::str(py::dtype::of<T>())));
  if (!(a.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(name) + " must be C-contiguous");
  if (writable && !a.writeable())
    throw std::invalid_argument(std::string(name) + " must be writable");
  if (expect_size >= 0 && a.size() != expect_size)
    throw std::invalid_argument(std::string(name) + " has " + std::to_string(a.size()) +
                                " elements, expected " + std::to_string(expect_size));
  return static_cast<T*>(writable ? a.mutable_data() : const_cast<void*>(a.data()));
}

inline int64_t array_size(const py::object& obj, const char* name) {
  if (!py::isinstance<py::array>(obj))
    throw std::invalid_argument(std::string(name) + " must be a numpy array");
  return static_cast<int64_t>(py::reinterpret_borrow<py::array>(obj).size());
}

void bind_optim(py::module_& m);
void bind_norm(py::module_& m);
void bind_batchnorm(py::module_& m);
void bind_layernorm(py::module_& m);
void bind_dropout(py::module_& m);
void bind_loss(py::module_& m);
void bind_probe(py::module_& m);
void bind_conv(py::module_& m);
void bind_gemm(py::module_& m);

}  // namespace fusetrain_py
