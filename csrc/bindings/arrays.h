// How a binding reads its array arguments and launches its kernel. Every op's binding is written
// once (bind_<op>.h), as a template over the device: Host here (numpy arrays, _core), Cuda in
// cuda_arrays.h (objects with __cuda_array_interface__, _cuda). Either one re-checks what memory
// safety needs -- dtype, C-contiguity, writability, alignment and the exact element count -- and
// never converts or copies; the user-facing checks are fusetrain.ops'.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "fusetrain/common.h"

namespace fusetrain_py {
namespace py = pybind11;

[[noreturn]] inline void refuse(const char* name, const std::string& what) {
  throw std::invalid_argument(std::string(name) + what);
}

inline void check_size(const char* name, int64_t size, int64_t expect) {
  if (expect >= 0 && size != expect)
    refuse(name, " has " + std::to_string(size) + " elements, expected " + std::to_string(expect));
}

// The kernels load whole elements (and vectors of them); numpy.frombuffer at an odd offset gives
// arrays whose elements straddle that boundary.
inline void check_aligned(const char* name, std::uintptr_t address, size_t itemsize) {
  if (address % itemsize)
    refuse(name, " is not aligned to its " + std::to_string(itemsize) +
                     "-byte elements (a view at an odd byte offset?); pass an aligned copy, e.g. numpy.array(" + name +
                     ")");
}

// numpy arrays; kernels run on fusetrain's thread pool with the GIL released.
class Host {
 public:
  static constexpr bool kCuda = false;

  template <class T>
  T* array(const py::object& obj, const char* name, int64_t expect, bool writable, bool allow_none) {
    if (obj.is_none()) {
      if (allow_none) return nullptr;
      refuse(name, " must be an array, got None");
    }
    if (!py::isinstance<py::array>(obj)) refuse(name, " must be a numpy array");
    auto a = py::reinterpret_borrow<py::array>(obj);
    if (!a.dtype().equal(py::dtype::of<T>()))
      refuse(name, " has dtype " + std::string(py::str(a.dtype())) + ", expected " +
                       std::string(py::str(py::dtype::of<T>())));
    if (!(a.flags() & py::array::c_style)) refuse(name, " must be C-contiguous");
    if (writable && !a.writeable()) refuse(name, " must be writable");
    check_size(name, int64_t(a.size()), expect);
    check_aligned(name, reinterpret_cast<std::uintptr_t>(a.data()), sizeof(T));
    return static_cast<T*>(writable ? a.mutable_data() : const_cast<void*>(a.data()));
  }

  int64_t size(const py::object& obj, const char* name) {
    if (!py::isinstance<py::array>(obj)) refuse(name, " must be a numpy array");
    return int64_t(py::reinterpret_borrow<py::array>(obj).size());
  }

  // kernel() with the GIL released.
  template <class Kernel>
  auto launch(Kernel&& kernel) {
    py::gil_scoped_release nogil;
    return kernel();
  }
};

// The array arguments of a binding, read through the device policy `d`: `in` read-only, `out`
// written, `*_opt` may be None (a null pointer). The expected size is an element count or the
// dimensions whose product it is (checked against overflow).
template <class T, class Dev>
const T* in(Dev& d, const py::object& obj, const char* name, int64_t size) {
  return d.template array<T>(obj, name, size, false, false);
}
template <class T, class Dev>
const T* in_opt(Dev& d, const py::object& obj, const char* name, int64_t size) {
  return d.template array<T>(obj, name, size, false, true);
}
template <class T, class Dev>
T* out(Dev& d, const py::object& obj, const char* name, int64_t size) {
  return d.template array<T>(obj, name, size, true, false);
}
template <class T, class Dev>
T* out_opt(Dev& d, const py::object& obj, const char* name, int64_t size) {
  return d.template array<T>(obj, name, size, true, true);
}
inline int64_t dims(std::initializer_list<int64_t> sizes, const char* name) {
  return fusetrain::checked_numel(sizes, name);
}

}  // namespace fusetrain_py
