// Shared by every kernel: argument checks, checked sizes, host-device inline math, the stream type
// of the GPU overloads; for the CPU kernels also scratch buffers and the parallel grain.
#pragma once
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

// Element math in the op headers is written once for both devices: nvcc compiles it for the host
// and the GPU, a C++ compiler as plain inline functions (docs/architecture.md, section 5).
#if defined(__CUDACC__)
#define FT_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FT_HOST_DEVICE inline
#endif

// Each op header declares its GPU kernels as overloads of the CPU ones with a trailing stream
// (defined in csrc/cuda/<op>.cu). The CUDA runtime's own typedef is the same declaration, so the
// headers need no CUDA include and _core, which never links CUDA, compiles them as they are.
struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;

namespace fusetrain {

// Element-wise updates (the optimizers', weight averaging, scaling, clamping) are functors over
// one element's values in up to kMaxSlots parallel buffers ("slots"), passed by reference and
// updated in place: operator()(s0, s1, s2, s3, s4). kLoad / kStore have bit k set when the
// functor reads / writes slot k, so a device's driver (csrc/cpu/slots.h, csrc/cuda/slots.cuh)
// loads and stores only those; the others hold 0.
constexpr int kMaxSlots = 5;

inline void check(bool ok, const std::string& msg) {
  if (!ok) throw std::invalid_argument(msg);
}

inline void check_size(int64_t n, const char* name) {
  if (n < 0) throw std::invalid_argument(std::string(name) + " must be >= 0, got " + std::to_string(n));
}

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Largest element count any size product may reach: far above what memory holds, and low enough
// that adding a few elements or multiplying by an element size cannot overflow int64.
constexpr int64_t kMaxElements = int64_t(1) << 62;

// a * b for sizes a, b >= 0; throws (naming `what`) instead of overflowing.
inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  int64_t r = 0;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r) || r > kMaxElements)
    throw std::invalid_argument(std::string(what) + ": the sizes " + std::to_string(a) + " x " + std::to_string(b) +
                                (a < 0 || b < 0 ? " include a negative one" : " overflow (more than 2**62 elements)"));
  return r;
}

// Per-thread scratch that outlives the call: `slot` names one of a few buffers of the calling
// thread, grown when a call needs more and kept for the next call, so a training step's large
// scratch is not mapped afresh (and page-faulted in) by every kernel. Uninitialized. A kernel
// uses each slot once at a time; requests above a cap get memory of their own, freed with the
// returned holder.
struct ScratchBuf {
  float* ptr;
  std::unique_ptr<float[]> own;  // set only when the request was above the cap
};
ScratchBuf thread_scratch(int slot, int64_t n);

// Below this many elements of work a kernel runs on the calling thread alone: handing out tasks
// costs more than it saves.
constexpr int64_t kParallelGrain = 1 << 15;

}  // namespace fusetrain
