// How a binding reads its array arguments and launches its kernel. Every op's binding is written
// once (bind_<op>.h), as a template over the device: Host here (numpy arrays, _core), Cuda in
// cuda_arrays.h (objects with __cuda_array_interface__, _cuda). Either one re-checks what memory
// safety needs -- dtype, C-contiguity, writability, alignment and the exact element count -- and
// never converts or copies; the user-facing checks are fusetrain.ops' (docs/architecture.md,
// sections 4 and 10).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

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

// Whether an optional array argument was left out (None); a required one may not be.
inline bool absent(const py::object& obj, const char* name, bool allow_none) {
  if (obj.is_none() && !allow_none) refuse(name, " must be an array, got None");
  return obj.is_none();
}

// The kernel `name` -- its CPU overload, and its GPU one, which takes a trailing stream -- as one
// callable, so a binding written once calls whichever the device policy's run() selects.
#define FT_KERNEL(name) [](auto... args) { return fusetrain::name(args...); }

// numpy arrays; kernels run on fusetrain's thread pool with the GIL released.
class Host {
 public:
  static constexpr bool kCuda = false;

  template <class T>
  T* array(const py::object& obj, const char* name, int64_t expect, bool writable, bool allow_none) {
    if (absent(obj, name, allow_none)) return nullptr;
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

  // kernel(args...) with the GIL released. The arguments come as a tuple built from a braced list,
  // so the arrays are read (and refused) in the order they are written.
  template <class Kernel, class... A>
  auto run(Kernel&& kernel, std::tuple<A...> args) {
    py::gil_scoped_release nogil;
    return std::apply(kernel, args);
  }
};

// The array arguments of a binding, read through the device policy `d`: `in` read-only, `out`
// written, `*_opt` may be None (a null pointer). The expected size is an element count (-1: any)
// or the dimensions whose product it is (checked against overflow).
class Size {
 public:
  Size(int64_t count) : count_(count) {}                   // NOLINT: implicit by design, as the dims below
  Size(std::initializer_list<int64_t> dims) : count_(1) {  // NOLINT
    fusetrain::check(dims.size() <= sizeof(dims_) / sizeof(dims_[0]), "too many dimensions");
    for (int64_t d : dims) dims_[nd_++] = d;
  }
  // The count, the dimensions multiplied without overflow (an error names the array).
  int64_t of(const char* name) const {
    int64_t n = count_;
    for (int i = 0; i < nd_; ++i) n = fusetrain::checked_mul(n, dims_[i], name);
    return n;
  }

 private:
  int64_t count_;
  int64_t dims_[6] = {};
  int nd_ = 0;
};

template <class T = float, class Dev>
const T* in(Dev& d, const py::object& obj, const char* name, Size size) {
  return d.template array<T>(obj, name, size.of(name), false, false);
}
template <class T = float, class Dev>
const T* in_opt(Dev& d, const py::object& obj, const char* name, Size size) {
  return d.template array<T>(obj, name, size.of(name), false, true);
}
template <class T = float, class Dev>
T* out(Dev& d, const py::object& obj, const char* name, Size size) {
  return d.template array<T>(obj, name, size.of(name), true, false);
}
template <class T = float, class Dev>
T* out_opt(Dev& d, const py::object& obj, const char* name, Size size) {
  return d.template array<T>(obj, name, size.of(name), true, true);
}

}  // namespace fusetrain_py
