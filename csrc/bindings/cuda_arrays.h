// The _cuda module's device policy (see arrays.h): array arguments are objects exposing
// __cuda_array_interface__ (CuPy arrays), read for their pointer, size, dtype, strides and
// writability; the kernels are enqueued on the stream the interface names, i.e. CuPy's current
// stream when the call was made, so they are ordered with CuPy's own work.
#pragma once
#include <cuda_runtime_api.h>

#include <string>
#include <type_traits>

#include "arrays.h"

namespace fusetrain_py {

// The interface's typestr of the element types the kernels take.
template <class T>
constexpr const char* typestr() {
  if constexpr (std::is_same_v<T, float>) return "<f4";
  if constexpr (std::is_same_v<T, int32_t>) return "<i4";
  if constexpr (std::is_same_v<T, int64_t>) return "<i8";
  if constexpr (std::is_same_v<T, uint8_t>) return "|u1";
}

class Cuda {
 public:
  static constexpr bool kCuda = true;

  template <class T>
  T* array(const py::object& obj, const char* name, int64_t expect, bool writable, bool allow_none) {
    if (absent(obj, name, allow_none)) return nullptr;
    const py::dict cai = interface(obj, name);
    const std::string type = py::str(cai["typestr"]);
    if (type != typestr<T>()) refuse(name, " has typestr " + type + ", expected " + typestr<T>());
    const py::tuple shape = cai["shape"];
    int64_t n = 1;
    for (const auto& d : shape) n = fusetrain::checked_mul(n, d.cast<int64_t>(), name);
    if (cai.contains("mask") && !cai["mask"].is_none()) refuse(name, " must not be a masked array");
    if (cai.contains("strides") && !cai["strides"].is_none()) {
      // Explicit strides are allowed when they are the C-contiguous ones (size-1 axes aside).
      const py::tuple strides = cai["strides"];
      int64_t expected = int64_t(sizeof(T));
      for (size_t i = shape.size(); i-- > 0;) {
        const int64_t extent = shape[i].cast<int64_t>();
        if (extent != 1 && strides[i].cast<int64_t>() != expected && n > 0) refuse(name, " must be C-contiguous");
        expected *= extent;
      }
    }
    const py::tuple data = cai["data"];
    const auto address = data[0].cast<std::uintptr_t>();
    if (writable && data[1].cast<bool>()) refuse(name, " must be writable");
    check_size(name, n, expect);
    if (n > 0 && address == 0) refuse(name, " must be a device pointer, got 0");
    check_aligned(name, address, sizeof(T));
    if (!have_stream_ && cai.contains("stream") && !cai["stream"].is_none()) {
      // CAI v3: 1 and 2 name the legacy and per-thread default streams, as the CUDA runtime's
      // cudaStreamLegacy and cudaStreamPerThread handles do.
      stream_ = reinterpret_cast<cudaStream_t>(cai["stream"].cast<std::uintptr_t>());
      have_stream_ = true;
    }
    return reinterpret_cast<T*>(address);
  }

  int64_t size(const py::object& obj, const char* name) {
    const py::tuple shape = interface(obj, name)["shape"];
    int64_t n = 1;
    for (const auto& d : shape) n = fusetrain::checked_mul(n, d.cast<int64_t>(), name);
    return n;
  }

  // kernel(args..., stream) with the GIL released: the trailing stream selects the GPU overload.
  template <class Kernel, class... A>
  auto run(Kernel&& kernel, std::tuple<A...> args) {
    auto with_stream = std::tuple_cat(args, std::make_tuple(stream_));
    py::gil_scoped_release nogil;
    return std::apply(kernel, with_stream);
  }

 private:
  static py::dict interface(const py::object& obj, const char* name) {
    if (!py::hasattr(obj, "__cuda_array_interface__"))
      refuse(name, " must be a CUDA array (an object with __cuda_array_interface__, e.g. a cupy.ndarray)");
    return obj.attr("__cuda_array_interface__");
  }

  cudaStream_t stream_ = nullptr;  // the default stream unless an array names one
  bool have_stream_ = false;
};

}  // namespace fusetrain_py
