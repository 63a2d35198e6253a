// Window geometry on the GPU, shared by the convolution helpers (conv.cu) and pooling
// (pooling.cu): a checked Window2d narrowed to int, and a one-thread-per-element driver.
#pragma once
#include <climits>

#include "common.cuh"
#include "fusetrain/window.h"

namespace fusetrain {
namespace gpu {

struct PlanePoint {
  int64_t plane;
  int row, col;
};

// Window2d narrowed to int for the kernels (window2d_init bounds every in-plane value).
struct Geom {
  int H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW;
  __host__ __device__ int64_t hw() const { return int64_t(H) * W; }
  __host__ __device__ int64_t ohw() const { return int64_t(OH) * OW; }
  // Element e of (planes, OH, OW) outputs: its plane and position (row, column).
  __device__ __forceinline__ PlanePoint output_of(int64_t e) const { return point(e, ohw(), OW); }
  // Element e of (planes, H, W) inputs: its plane and pixel.
  __device__ __forceinline__ PlanePoint pixel_of(int64_t e) const { return point(e, hw(), W); }

 private:
  __device__ __forceinline__ static PlanePoint point(int64_t e, int64_t plane_size, int width) {
    int64_t p, at;
    divmod(e, plane_size, p, at);
    const int row = int(at) / width;
    return PlanePoint{p, row, int(at) - row * width};
  }
};

// Re-checks a caller's geometry (its OH/OW included), so a stale Window2d cannot send a kernel
// out of bounds. The kernels index inside a plane with int: every tap, window start and output
// coordinate is bounded by the padded plane's sides.
inline Geom checked(const Window2d& g) {
  Window2d c = g;
  window2d_init(c);
  check(c.OH == g.OH && c.OW == g.OW, "window output size " + std::to_string(g.OH) + "x" + std::to_string(g.OW) +
                                          " does not match the geometry (expected " + std::to_string(c.OH) + "x" +
                                          std::to_string(c.OW) + ")");
  check(g.H + 2 * g.PH < INT_MAX && g.W + 2 * g.PW < INT_MAX,
        "padded input planes must have fewer than 2**31 rows and columns");
  return Geom{int(g.H),  int(g.W),  int(g.KH), int(g.KW), int(g.SH), int(g.SW),
              int(g.PH), int(g.PW), int(g.DH), int(g.DW), int(g.OH), int(g.OW)};
}

namespace detail {

template <class Op>
__global__ void __launch_bounds__(kThreads) each_kernel(Op op, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) op(e);
}

}  // namespace detail

// op(e) for every e in [0, n), one thread per element, grid-stride.
template <class Op>
void launch_each(const Op& op, int64_t n, cudaStream_t stream, const char* name) {
  if (n <= 0) return;
  detail::each_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(op, n);
  check_launch(name);
}

}  // namespace gpu
}  // namespace fusetrain
