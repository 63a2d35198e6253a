// Helpers for the _core bindings: turn a numpy array argument into a typed pointer after
// re-checking dtype, contiguity, alignment, writability and size (never converting or copying).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "fusetrain/common.h"
#include "fusetrain/epilogue.h"

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
  // The kernels load whole elements (and vectors of them); numpy.frombuffer at an odd offset
  // gives arrays whose elements straddle that boundary.
  if (reinterpret_cast<std::uintptr_t>(a.data()) % alignof(T))
    throw std::invalid_argument(std::string(name) + " is not aligned to its " + std::to_string(sizeof(T)) +
                                "-byte elements (a view at an odd byte offset?); pass an aligned copy, "
                                "e.g. numpy.array(" + name + ")");
  return static_cast<T*>(writable ? a.mutable_data() : const_cast<void*>(a.data()));
}

// The same with the expected size given as dimensions, multiplied without overflow.
template <class T>
T* array_ptr(const py::object& obj, const char* name, std::initializer_list<int64_t> dims, bool writable,
             bool allow_none = false) {
  return array_ptr<T>(obj, name, fusetrain::checked_numel(dims, name), writable, allow_none);
}

inline int64_t array_size(const py::object& obj, const char* name) {
  if (!py::isinstance<py::array>(obj))
    throw std::invalid_argument(std::string(name) + " must be a numpy array");
  return static_cast<int64_t>(py::reinterpret_borrow<py::array>(obj).size());
}

// The arguments of an eval epilogue (fusetrain/epilogue.h) for C channels: optional (C,) arrays.
inline fusetrain::Epilogue epilogue_args(int64_t C, const py::object& bias, const py::object& mean,
                                         const py::object& var, const py::object& w, const py::object& b, double eps,
                                         int act, float slope) {
  fusetrain::check(act >= 0 && act <= 4, "act must be an activation code in [0, 4], got " + std::to_string(act));
  fusetrain::check(mean.is_none() == var.is_none(), "bn_mean and bn_var must both be given or both be None");
  fusetrain::check(mean.is_none() ? (w.is_none() && b.is_none()) : (w.is_none() == b.is_none()),
                   "bn_weight and bn_bias must both be given (with bn_mean and bn_var) or both be None");
  fusetrain::check(eps > 0, "eps must be > 0");
  fusetrain::Epilogue e;
  e.bias = array_ptr<float>(bias, "bias", C, false, true);
  e.mean = array_ptr<float>(mean, "bn_mean", C, false, true);
  e.var = array_ptr<float>(var, "bn_var", C, false, true);
  e.w = array_ptr<float>(w, "bn_weight", C, false, true);
  e.b = array_ptr<float>(b, "bn_bias", C, false, true);
  e.eps = eps;
  e.act = static_cast<fusetrain::Act>(act);
  e.slope = slope;
  return e;
}

void bind_optim(py::module_& m);
void bind_epilogue(py::module_& m);
void bind_norm(py::module_& m);
void bind_batchnorm(py::module_& m);
void bind_layernorm(py::module_& m);
void bind_dropout(py::module_& m);
void bind_loss(py::module_& m);
void bind_probe(py::module_& m);
void bind_conv(py::module_& m);
void bind_gemm(py::module_& m);

}  // namespace fusetrain_py
