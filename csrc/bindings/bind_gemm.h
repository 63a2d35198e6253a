// Binding of the GEMM (fusetrain/gemm.h), _core only (CuPy arrays go to cuBLAS): operands are
// 2-D float32 numpy arrays of any strides (transposed views included); the output must be
// C-contiguous, aligned and must not overlap the operands.
#pragma once
#include <algorithm>
#include <cstdint>

#include "arrays.h"
#include "fusetrain/gemm.h"

namespace fusetrain_py {

namespace gemm_detail {

struct View {
  float* ptr;
  int64_t rows, cols, s0, s1;  // element strides

  // The bytes [lo, hi) the view may touch (none when it is empty); strides may be negative.
  bool empty() const { return rows == 0 || cols == 0; }
  std::uintptr_t lo() const {
    return reinterpret_cast<std::uintptr_t>(ptr + std::min<int64_t>(0, (rows - 1) * s0) +
                                            std::min<int64_t>(0, (cols - 1) * s1));
  }
  std::uintptr_t hi() const {
    return reinterpret_cast<std::uintptr_t>(ptr + std::max<int64_t>(0, (rows - 1) * s0) +
                                            std::max<int64_t>(0, (cols - 1) * s1) + 1);
  }
};

// Whether two views' byte ranges meet (a conservative test, like numpy.may_share_memory).
inline bool overlap(const View& a, const View& b) {
  return !a.empty() && !b.empty() && a.lo() < b.hi() && b.lo() < a.hi();
}

inline View view2d(const py::object& obj, const char* name, bool writable) {
  if (!py::isinstance<py::array>(obj)) throw std::invalid_argument(std::string(name) + " must be a numpy array");
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (!arr.dtype().equal(py::dtype::of<float>()))
    throw std::invalid_argument(std::string(name) + " has dtype " + std::string(py::str(arr.dtype())) +
                                ", expected float32");
  if (arr.ndim() != 2) throw std::invalid_argument(std::string(name) + " must be 2-D");
  if (arr.strides(0) % ssize_t(sizeof(float)) || arr.strides(1) % ssize_t(sizeof(float)))
    throw std::invalid_argument(std::string(name) + " has strides that are not whole elements");
  if (writable && !arr.writeable()) throw std::invalid_argument(std::string(name) + " must be writable");
  check_aligned(name, reinterpret_cast<std::uintptr_t>(arr.data()), sizeof(float));
  float* p = static_cast<float*>(writable ? arr.mutable_data() : const_cast<void*>(arr.data()));
  return {p, arr.shape(0), arr.shape(1), arr.strides(0) / ssize_t(sizeof(float)),
          arr.strides(1) / ssize_t(sizeof(float))};
}

}  // namespace gemm_detail

inline void bind_gemm(py::module_& m) {
  using gemm_detail::View;
  m.def(
      "gemm",
      [](py::object a, py::object b, py::object out_, bool accumulate) {
        const View A = gemm_detail::view2d(a, "a", false), B = gemm_detail::view2d(b, "b", false),
                   C = gemm_detail::view2d(out_, "out", true);
        fusetrain::check(A.cols == B.rows, "a and b have incompatible shapes");
        fusetrain::check(C.rows == A.rows && C.cols == B.cols, "out has the wrong shape");
        fusetrain::check(C.empty() || (C.s1 == 1 && (C.rows <= 1 || C.s0 >= C.cols)), "out must be C-contiguous rows");
        // The kernel writes out tile by tile while it still reads a and b.
        fusetrain::check(!gemm_detail::overlap(C, A) && !gemm_detail::overlap(C, B), "out must not overlap a or b");
        py::gil_scoped_release nogil;
        fusetrain::gemm(A.rows, B.cols, A.cols, A.ptr, A.s0, A.s1, B.ptr, B.s0, B.s1, C.ptr, C.s0 > 0 ? C.s0 : C.cols,
                        accumulate);
      },
      py::arg("a"), py::arg("b"), py::arg("out"), py::arg("accumulate"),
      "out (M, N) = a (M, K) @ b (K, N), or out += a @ b when accumulate");
}

}  // namespace fusetrain_py
