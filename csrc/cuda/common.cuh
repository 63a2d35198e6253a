// Plumbing shared by the CUDA kernels, kept apart from their math: error checks, stream-ordered
// scratch memory, quad (4-element) loads and Philox words, deterministic block reductions and
// the iteration drivers (flat quads, two-stage reduction, column tiles, channel planes).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <stdexcept>
#include <string>

#include "fusetrain/common.h"
#include "fusetrain/philox.h"

namespace fusetrain {
namespace gpu {

constexpr int kThreads = 256;              // threads per block of the 1-D kernels
constexpr int64_t kMaxGrid = 1 << 20;      // grid-stride kernels never launch more blocks
constexpr int64_t kTargetBlocks = 1024;    // reductions aim for about this many blocks
constexpr int kTileCols = 32;              // column tiles: threads along x, 4 columns each
constexpr int kTileRows = 8;               // column tiles: threads along y (rows)

// ---- host helpers -------------------------------------------------------------------------

inline void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(err));
}

// Launch-configuration errors surface here; faults inside a kernel surface at the next sync.
inline void check_launch(const char* kernel) { check_cuda(cudaGetLastError(), kernel); }

inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline unsigned grid_for(int64_t work, int64_t per_block) {
  return static_cast<unsigned>(std::min(std::max<int64_t>(cdiv(work, per_block), 1), kMaxGrid));
}

// float4 accesses need every pointer 16-byte aligned (slices of an arena may not be).
inline bool aligned16(std::initializer_list<const void*> ptrs) {
  for (const void* p : ptrs)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

// Stream-ordered pool for kernel scratch, one per device, created on first use (never at import).
// A private pool keeps its memory between calls (the default pool would hand it back to the
// driver at every synchronization) and leaves other libraries' pools alone.
inline cudaMemPool_t scratch_pool() {
  constexpr int kMaxDevices = 64;
  static std::mutex mutex;
  static cudaMemPool_t pools[kMaxDevices] = {};
  int dev = 0;
  check_cuda(cudaGetDevice(&dev), "cudaGetDevice");
  check(dev >= 0 && dev < kMaxDevices, "device index out of range: " + std::to_string(dev));
  std::lock_guard<std::mutex> lock(mutex);
  if (pools[dev] == nullptr) {
    cudaMemPoolProps props = {};
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = dev;
    cudaMemPool_t pool = nullptr;
    check_cuda(cudaMemPoolCreate(&pool, &props), "cudaMemPoolCreate");
    uint64_t keep = uint64_t(64) << 20;  // bytes the pool may hold while idle
    check_cuda(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep), "cudaMemPoolSetAttribute");
    pools[dev] = pool;
  }
  return pools[dev];
}

// Device scratch allocated and freed in stream order, so concurrent calls on different streams
// never share a buffer and nothing waits for the device.
class Scratch {
 public:
  Scratch(size_t bytes, cudaStream_t stream) : stream_(stream) {
    if (bytes) check_cuda(cudaMallocFromPoolAsync(&ptr_, bytes, scratch_pool(), stream), "cudaMallocFromPoolAsync");
  }
  ~Scratch() {
    if (ptr_) cudaFreeAsync(ptr_, stream_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class T>
  T* as(size_t offset_elems = 0) const {
    return static_cast<T*>(ptr_) + offset_elems;
  }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
};

// Copies one value back and waits for it: the only synchronizing step of the host-value kernels.
template <class T>
T read_back(const T* dev, cudaStream_t stream) {
  T host{};
  check_cuda(cudaMemcpyAsync(&host, dev, sizeof(T), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync");
  check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  return host;
}

// ---- device helpers -----------------------------------------------------------------------

__device__ __forceinline__ void load4(float (&r)[4], const float* p, int64_t e0, int cnt, bool vec) {
  if (vec && cnt == 4) {
    const float4 t = *reinterpret_cast<const float4*>(p + e0);
    r[0] = t.x; r[1] = t.y; r[2] = t.z; r[3] = t.w;
    return;
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) r[j] = j < cnt ? p[e0 + j] : 0.0f;
}

__device__ __forceinline__ void store4(float* p, int64_t e0, int cnt, const float (&r)[4], bool vec) {
  if (vec && cnt == 4) {
    *reinterpret_cast<float4*>(p + e0) = make_float4(r[0], r[1], r[2], r[3]);
    return;
  }
#pragma unroll
  for (int j = 0; j < 4; ++j)
    if (j < cnt) p[e0 + j] = r[j];
}

// q = a / b, r = a % b for a >= 0, b > 0; 32-bit division (far cheaper on the GPU) when both fit.
__device__ __forceinline__ void divmod(int64_t a, int64_t b, int64_t& q, int64_t& r) {
  if (((a | b) >> 32) == 0) {
    const uint32_t q32 = uint32_t(a) / uint32_t(b);
    q = int64_t(q32);
  } else {
    q = a / b;
  }
  r = a - q * b;
}

__device__ __forceinline__ uint32_t philox_word(const Philox4& a, int i) {
  return i == 0 ? a.v[0] : i == 1 ? a.v[1] : i == 2 ? a.v[2] : a.v[3];
}

__device__ __forceinline__ Philox4 philox_block(uint64_t block, uint64_t seed) {
  return fusetrain::philox4x32_10(uint32_t(block), uint32_t(block >> 32), 0u, 0u, uint32_t(seed),
                       uint32_t(seed >> 32));
}

// Dropout words of elements [e0, e0 + cnt) (cnt <= 4) under philox.h's convention: element e uses
// word (offset + e) % 4 of block (offset + e) / 4. A quad starting at a multiple of 4 needs one
// block; a column-tile quad of a row whose length is not a multiple of 4 may straddle two.
__device__ __forceinline__ void dropout_words(uint32_t (&w)[4], uint64_t seed, uint64_t offset,
                                              int64_t e0, int cnt) {
  const uint64_t first = offset + uint64_t(e0);
  const uint64_t b0 = first / 4;
  const int skip = int(first % 4);
  const Philox4 a = philox_block(b0, seed);
  if (skip == 0) {
#pragma unroll
    for (int j = 0; j < 4; ++j) w[j] = a.v[j];
    return;
  }
  Philox4 b = a;
  if (skip + cnt > 4) b = philox_block(b0 + 1, seed);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int i = skip + j;
    w[j] = i < 4 ? philox_word(a, i) : philox_word(b, i - 4);
  }
}

// Reduction operators: identity plus an associative combine; the tree shapes below are fixed,
// so the bits of a result depend only on the launch shape, which depends only on the sizes.
template <class T>
struct SumOp {
  __device__ __forceinline__ T identity() const { return T(0); }
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};

template <>
struct SumOp<double2> {
  __device__ __forceinline__ double2 identity() const { return make_double2(0.0, 0.0); }
  __device__ __forceinline__ double2 operator()(double2 a, double2 b) const {
    return make_double2(a.x + b.x, a.y + b.y);
  }
};

// max that propagates NaN (the CPU's max|x| does the same).
struct MaxNanOp {
  __device__ __forceinline__ double identity() const { return 0.0; }
  __device__ __forceinline__ double operator()(double a, double b) const {
    if (a != a || b != b) return __longlong_as_double(0x7ff8000000000000LL);
    return a > b ? a : b;
  }
};

struct MaxFloatOp {
  __device__ __forceinline__ float identity() const { return -INFINITY; }
  __device__ __forceinline__ float operator()(float a, float b) const { return b > a ? b : a; }
};

template <class T>
__device__ __forceinline__ T shfl_down(T v, int delta) {
  return __shfl_down_sync(0xffffffffu, v, delta);
}
template <>
__device__ __forceinline__ double2 shfl_down<double2>(double2 v, int delta) {
  return make_double2(__shfl_down_sync(0xffffffffu, v.x, delta), __shfl_down_sync(0xffffffffu, v.y, delta));
}

// Block-wide reduction of a 1-D block (blockDim.x a multiple of 32, at most 1024); every thread
// gets the result. smem holds 32 values. Safe to call repeatedly with the same smem.
template <class T, class Op>
__device__ __forceinline__ T block_allreduce(T v, Op op, T* smem) {
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) v = op(v, shfl_down(v, d));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  __syncthreads();  // a previous call may still be reading smem
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  T total = smem[0];
  for (int i = 1; i < nwarps; ++i) total = op(total, smem[i]);
  return total;
}

// ---- driver 1: flat quads -----------------------------------------------------------------
// op(e0, cnt) handles elements [e0, e0 + cnt), e0 a multiple of 4, cnt = 4 except at the tail.
// Quads line up with Philox blocks (offsets are multiples of 4), so one block serves a quad.

namespace {

template <class Op>
__global__ void __launch_bounds__(kThreads) quad_kernel(Op op, int64_t n) {
  const int64_t quads = (n + 3) / 4;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t q = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; q < quads; q += stride) {
    const int64_t e0 = 4 * q;
    op(e0, n - e0 < 4 ? int(n - e0) : 4);
  }
}

}  // namespace

template <class Op>
void launch_quads(const Op& op, int64_t n, cudaStream_t stream, const char* name) {
  if (n <= 0) return;
  quad_kernel<<<grid_for(cdiv(n, 4), kThreads), kThreads, 0, stream>>>(op, n);
  check_launch(name);
}

// ---- driver 2: two-stage reduction to one value ---------------------------------------------
// src(q) yields the op-combination of item q's values; stage 1 writes one partial per block,
// stage 2 (one block) combines them. Launch shapes depend only on `items`.

namespace {

template <class T, class Src, class Op>
__global__ void __launch_bounds__(kThreads) reduce_stage(Src src, int64_t items, T* out, Op op) {
  __shared__ T smem[32];
  T acc = op.identity();
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < items; i += stride)
    acc = op(acc, src(i));
  acc = block_allreduce(acc, op, smem);
  if (threadIdx.x == 0) out[blockIdx.x] = acc;
}

template <class T>
struct ArraySrc {
  const T* a;
  __device__ __forceinline__ T operator()(int64_t i) const { return a[i]; }
};

}  // namespace

template <class T, class Src, class Op>
T reduce_to_host(const Src& src, int64_t items, Op op, cudaStream_t stream, const char* name) {
  // At least 4 items per thread, at most kTargetBlocks partials.
  const int64_t blocks = std::min<int64_t>(std::max<int64_t>(cdiv(items, 4 * kThreads), 1), kTargetBlocks);
  Scratch scratch(sizeof(T) * size_t(blocks + 1), stream);
  T* part = scratch.as<T>();
  reduce_stage<T><<<unsigned(blocks), kThreads, 0, stream>>>(src, items, part, op);
  check_launch(name);
  reduce_stage<T><<<1, kThreads, 0, stream>>>(ArraySrc<T>{part}, blocks, part + blocks, op);
  check_launch(name);
  return read_back(part + blocks, stream);
}

// ---- driver 3: column tiles (sums down the rows of a (rows, cols) matrix) -------------------
// Block (kTileCols, kTileRows) covers 4*kTileCols columns and one chunk of rows; thread (tx, ty)
// owns columns [4*(tile*kTileCols + tx), +4) and rows chunk_start + ty, + kTileRows, ...
// op.quad(r, c0, e0, cnt, acc) handles elements e0 = r*cols + c0 .. + cnt and adds its
// contributions to acc[0..cnt). The block's sums go to partial[chunk][col] (double2), in a fixed
// order; column_chunks() depends only on the sizes.

struct ColumnPlan {
  int64_t tiles, chunks, rows_per_chunk;
};

inline ColumnPlan column_plan(int64_t rows, int64_t cols) {
  const int64_t tiles = cdiv(cols, 4 * kTileCols);
  if (rows == 0 || cols == 0) return ColumnPlan{tiles, 0, 0};
  int64_t chunks = std::min(cdiv(rows, 4 * kTileRows), cdiv(kTargetBlocks, tiles));
  chunks = std::max<int64_t>(std::min<int64_t>(chunks, 65535), 1);
  const int64_t per = cdiv(rows, chunks);
  return ColumnPlan{tiles, cdiv(rows, per), per};
}

namespace {

template <class Op>
__global__ void __launch_bounds__(kTileCols * kTileRows)
column_partials(Op op, int64_t rows, int64_t cols, int64_t rows_per_chunk, double2* partial) {
  __shared__ double2 smem[kTileRows][4 * kTileCols];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c0 = (int64_t(blockIdx.x) * kTileCols + tx) * 4;
  const int cnt = c0 >= cols ? 0 : (cols - c0 < 4 ? int(cols - c0) : 4);
  const int64_t r0 = int64_t(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
  double2 acc[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) acc[j] = make_double2(0.0, 0.0);
  if (cnt > 0)
    for (int64_t r = r0 + ty; r < r1; r += kTileRows) op.quad(r, c0, r * cols + c0, cnt, acc);
#pragma unroll
  for (int j = 0; j < 4; ++j) smem[ty][4 * tx + j] = acc[j];
  __syncthreads();
  // Row-thread sums in ty order; then each of the 4*kTileCols columns is written by one thread.
  const int t = ty * kTileCols + tx;
  if (t < 4 * kTileCols) {
    const int64_t col = int64_t(blockIdx.x) * 4 * kTileCols + t;
    if (col < cols) {
      double2 s = smem[0][t];
      for (int k = 1; k < kTileRows; ++k) s = make_double2(s.x + smem[k][t].x, s.y + smem[k][t].y);
      partial[int64_t(blockIdx.y) * cols + col] = s;
    }
  }
}

}  // namespace

template <class Op>
void launch_column_partials(const Op& op, int64_t rows, int64_t cols, const ColumnPlan& plan,
                            double2* partial, cudaStream_t stream, const char* name) {
  if (plan.chunks == 0 || plan.tiles == 0) return;
  const dim3 grid(unsigned(plan.tiles), unsigned(plan.chunks));
  const dim3 block(kTileCols, kTileRows);
  column_partials<<<grid, block, 0, stream>>>(op, rows, cols, plan.rows_per_chunk, partial);
  check_launch(name);
}

// ---- driver 4: channel planes of (N, C, S) with S > 1 ----------------------------------------
// Channel c's N*S values sit in N runs of S at elements (n*C + c)*S + s. They are walked in
// spans of `width` values (4 when S % 4 == 0 and the buffers are 16-byte aligned: float4 loads,
// more bytes in flight per thread; else 1), cut into chunks; block (c, chunk) adds
// op.span(e, c, width) over its chunk and writes partial[chunk][c] (double2).

struct PlanePlan {
  int64_t chunks, per_chunk;  // in spans
  int width;
};

inline PlanePlan plane_plan(int64_t N, int64_t C, int64_t S, bool vec) {
  const int width = vec && S % 4 == 0 ? 4 : 1;
  const int64_t spans = N * (S / width);
  if (spans == 0 || C == 0) return PlanePlan{0, 0, width};
  int64_t chunks = std::min(cdiv(spans, 16 * kThreads), cdiv(kTargetBlocks, std::max<int64_t>(C, 1)));
  chunks = std::max<int64_t>(std::min<int64_t>(chunks, 65535), 1);
  const int64_t per = cdiv(spans, chunks);
  return PlanePlan{cdiv(spans, per), per, width};
}

namespace {

template <class Op>
__global__ void __launch_bounds__(kThreads)
plane_partials(Op op, int64_t N, int64_t C, int64_t S, int width, int64_t per_chunk, double2* partial) {
  __shared__ double2 smem[32];
  const int64_t c = blockIdx.x;
  const int64_t Sw = S / width, spans = N * Sw;
  const int64_t j0 = int64_t(blockIdx.y) * per_chunk;
  const int64_t j1 = j0 + per_chunk < spans ? j0 + per_chunk : spans;
  double2 acc = make_double2(0.0, 0.0);
  int64_t j = j0 + threadIdx.x;
  if (j < j1) {
    // Step (n, s) by blockDim.x spans without dividing in the loop.
    int64_t n = j / Sw, s = j - n * Sw;
    const int64_t dn = blockDim.x / Sw, ds = blockDim.x - dn * Sw;
    for (; j < j1; j += blockDim.x) {
      const double2 v = op.span((n * C + c) * S + s * width, c, width);
      acc.x += v.x;
      acc.y += v.y;
      s += ds;
      n += dn;
      if (s >= Sw) {
        s -= Sw;
        ++n;
      }
    }
  }
  acc = block_allreduce(acc, SumOp<double2>{}, smem);
  if (threadIdx.x == 0) partial[int64_t(blockIdx.y) * C + c] = acc;
}

}  // namespace

template <class Op>
void launch_plane_partials(const Op& op, int64_t N, int64_t C, int64_t S, const PlanePlan& plan,
                           double2* partial, cudaStream_t stream, const char* name) {
  if (plan.chunks == 0) return;
  const dim3 grid(unsigned(C), unsigned(plan.chunks));
  plane_partials<<<grid, kThreads, 0, stream>>>(op, N, C, S, plan.width, plan.per_chunk, partial);
  check_launch(name);
}

// Sum of partial[0..chunks)[col] in chunk order.
__device__ __forceinline__ double2 sum_partials(const double2* partial, int64_t chunks, int64_t cols,
                                                int64_t col) {
  double2 s = make_double2(0.0, 0.0);
  for (int64_t g = 0; g < chunks; ++g) {
    const double2 v = partial[g * cols + col];
    s.x += v.x;
    s.y += v.y;
  }
  return s;
}

namespace {

// out_x[c] += float(sum.x), out_y[c] += float(sum.y) over the chunks of partial (either may be null).
__global__ void add_column_sums(const double2* partial, int64_t chunks, int64_t cols, float* out_x,
                                float* out_y) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  const double2 s = sum_partials(partial, chunks, cols, c);
  if (out_x) out_x[c] += float(s.x);
  if (out_y) out_y[c] += float(s.y);
}

inline void launch_add_column_sums(const double2* partial, int64_t chunks, int64_t cols, float* out_x,
                                   float* out_y, cudaStream_t stream, const char* name) {
  if (cols == 0) return;
  add_column_sums<<<unsigned(cdiv(cols, kThreads)), kThreads, 0, stream>>>(partial, chunks, cols, out_x, out_y);
  check_launch(name);
}

}  // namespace

}  // namespace gpu
}  // namespace fusetrain
