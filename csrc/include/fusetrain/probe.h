// Memory-bandwidth probes: what a trivial streaming loop reaches on this machine.
#pragma once
#include <cstdint>

namespace fusetrain {

void probe_copy(const float* src, float* dst, int64_t n);                       // 8 B/elem
void probe_triad(float* a, const float* b, const float* c, float s, int64_t n);  // 12 B/elem

}  // namespace fusetrain
