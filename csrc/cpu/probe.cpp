// Bandwidth probes (CPU): the simplest streaming loops, the ceiling for memory-bound kernels.
#include "fusetrain/probe.h"

#include "fusetrain/common.h"

namespace fusetrain {

void probe_copy(const float* __restrict src, float* __restrict dst, int64_t n) {
  check_size(n, "n");
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
}

void probe_triad(float* __restrict a, const float* __restrict b, const float* __restrict c, float s,
                 int64_t n) {
  check_size(n, "n");
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) a[i] = b[i] + s * c[i];
}

}  // namespace fusetrain
