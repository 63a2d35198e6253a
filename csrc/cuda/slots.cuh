// The GPU driver of the element-wise updates (optimizers, weight averaging, scaling, clamping):
// a Math functor of an op header (e.g. fusetrain/optim.h) declares which of up to kMaxSlots
// parallel buffers it reads (kLoad) and writes (kStore) and updates one element's values in
// place; SlotUpdate does the quad loads and stores (float4 when every used buffer is 16-byte
// aligned) around it. The CPU driver of the same functors is csrc/cpu/slots.h.
#pragma once
#include "common.cuh"
#include "fusetrain/common.h"

namespace fusetrain {
namespace gpu {

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
      math(v[0], v[1], v[2], v[3], v[4]);
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
