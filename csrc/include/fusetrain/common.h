// Shared helpers for the CPU kernels: argument checks, sizes, scratch buffers, the parallel grain.
#pragma once
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#if defined(__CUDACC__)
#define FT_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FT_HOST_DEVICE inline
#endif

namespace fusetrain {

inline void check(bool ok, const std::string& msg) {
  if (!ok) throw std::invalid_argument(msg);
}

inline void check_size(int64_t n, const char* name) {
  if (n < 0) throw std::invalid_argument(std::string(name) + " must be >= 0, got " + std::to_string(n));
}

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Scratch that every kernel writes before it reads: no zero fill (a std::vector would clear it).
template <class T>
inline std::unique_ptr<T[]> scratch(int64_t n) {
  return std::unique_ptr<T[]>(new T[size_t(n > 0 ? n : 1)]);
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
