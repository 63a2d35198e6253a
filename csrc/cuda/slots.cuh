// Element-wise updates over up to five parallel float buffers ("slots"), for the optimizers and
// the in-place helpers. A Math functor declares which slots it reads (kLoad) and writes (kStore)
// as bit masks and updates one element's values in place; SlotUpdate does the quad loads and
// stores (float4 when every used buffer is 16-byte aligned) around it.
#pragma once
#include "common.cuh"

namespace fusetrain {
namespace gpu {

constexpr int kMaxSlots = 5;

struct Slots {
  float* ptr[kMaxSlots];
};

template <class Math>
struct SlotUpdate {
  Slots s;
  Math math;
  bool vec;

  __device__ __forceinline__ void operator()(int64_t e0, int cnt) const {
    float r[kMaxSlots][4];
#pragma unroll
    for (int k = 0; k < kMaxSlots; ++k)
      if (Math::kLoad & (1u << k)) load4(r[k], s.ptr[k], e0, cnt, vec);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      float v[kMaxSlots];
#pragma unroll
      for (int k = 0; k < kMaxSlots; ++k) v[k] = (Math::kLoad & (1u << k)) ? r[k][j] : 0.0f;
      math(v);
#pragma unroll
      for (int k = 0; k < kMaxSlots; ++k)
        if (Math::kStore & (1u << k)) r[k][j] = v[k];
    }
#pragma unroll
    for (int k = 0; k < kMaxSlots; ++k)
      if (Math::kStore & (1u << k)) store4(s.ptr[k], e0, cnt, r[k], vec);
  }
};

template <class Math>
void run_slots(const Math& math, const Slots& s, int64_t n, cudaStream_t stream, const char* name) {
  bool vec = true;
  for (int k = 0; k < kMaxSlots; ++k)
    if (Math::kLoad & (1u << k)) vec = vec && aligned16({s.ptr[k]});
  launch_quads(SlotUpdate<Math>{s, math, vec}, n, stream, name);
}

}  // namespace gpu
}  // namespace fusetrain
