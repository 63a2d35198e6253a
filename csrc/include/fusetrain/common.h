// Shared helpers for the CPU kernels: argument checks, thread partitioning, accumulator types.
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

// Reductions accumulate in double on the CPU (float32 storage everywhere).
using acc_t = double;

inline void check(bool ok, const std::string& msg) {
  if (!ok) throw std::invalid_argument(msg);
}

inline void check_size(int64_t n, const char* name) {
  if (n < 0) throw std::invalid_argument(std::string(name) + " must be >= 0, got " + std::to_string(n));
}

// Half-open [begin, end) slice of [0, n) for thread t of nt, in units of `align` elements so
// each thread's vector loop starts aligned with the others' boundaries.
struct Range { int64_t begin, end; };
inline Range split_range(int64_t n, int t, int nt, int64_t align = 16) {
  int64_t blocks = (n + align - 1) / align;
  int64_t per = blocks / nt, rem = blocks % nt;
  int64_t b0 = t * per + (t < rem ? t : rem);
  int64_t b1 = b0 + per + (t < rem ? 1 : 0);
  int64_t begin = b0 * align, end = b1 * align;
  if (begin > n) begin = n;
  if (end > n) end = n;
  return {begin, end};
}

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Scratch that every kernel writes before it reads: no zero fill (a std::vector would clear it).
template <class T>
inline std::unique_ptr<T[]> scratch(int64_t n) {
  return std::unique_ptr<T[]>(new T[size_t(n > 0 ? n : 1)]);
}

// Below this many elements a kernel runs on one thread: waking the team costs more than it saves.
constexpr int64_t kParallelGrain = 1 << 15;

}  // namespace fusetrain
