// The CPU driver of the element-wise updates (optimizers, weight averaging, scaling, clamping):
// a Math functor of an op header (e.g. fusetrain/optim.h) applied to every element of up to
// kMaxSlots parallel buffers, cut into chunks for the thread pool. The GPU driver of the same
// functors is csrc/cuda/slots.cuh.
#pragma once
#include <cstdint>

#include "fusetrain/common.h"
#include "fusetrain/parallel.h"

namespace fusetrain {

struct Slots {
  float* ptr[kMaxSlots];
};

namespace detail {

// One chunk. The pointers arrive as restrict-qualified arguments and the functor by value: read
// through a lambda's captures the compiler could not prove the arrays distinct from the scalars
// and left the loop scalar. Slots a functor does not load hold 0 (it never reads them).
template <class Math>
void slots_chunk(const Math math, float* __restrict s0, float* __restrict s1, float* __restrict s2,
                 float* __restrict s3, float* __restrict s4, int64_t n) {
  constexpr unsigned L = Math::kLoad, S = Math::kStore;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    float v0 = (L & 1u) ? s0[i] : 0.0f, v1 = (L & 2u) ? s1[i] : 0.0f, v2 = (L & 4u) ? s2[i] : 0.0f,
          v3 = (L & 8u) ? s3[i] : 0.0f, v4 = (L & 16u) ? s4[i] : 0.0f;
    math(v0, v1, v2, v3, v4);
    if constexpr ((S & 1u) != 0) s0[i] = v0;
    if constexpr ((S & 2u) != 0) s1[i] = v1;
    if constexpr ((S & 4u) != 0) s2[i] = v2;
    if constexpr ((S & 8u) != 0) s3[i] = v3;
    if constexpr ((S & 16u) != 0) s4[i] = v4;
  }
}

inline float* at(float* p, int64_t i) { return p ? p + i : nullptr; }

}  // namespace detail

// math over elements [0, n) of the slots, in parallel (chunks aligned to cache lines).
template <class Math>
void run_slots(const Math& math, const Slots& s, int64_t n) {
  parallel_for(n, [&](int64_t lo, int64_t hi) {
    detail::slots_chunk(math, detail::at(s.ptr[0], lo), detail::at(s.ptr[1], lo), detail::at(s.ptr[2], lo),
                        detail::at(s.ptr[3], lo), detail::at(s.ptr[4], lo), hi - lo);
  });
}

}  // namespace fusetrain
