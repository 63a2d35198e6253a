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

void probe_update(float* const* outs, int nout, const float* __restrict in, int64_t n) {
  check_size(n, "n");
  check(nout >= 1 && nout <= 4, "probe_update takes 1 to 4 outputs");
  float* __restrict o0 = outs[0];
  float* __restrict o1 = nout > 1 ? outs[1] : nullptr;
  float* __restrict o2 = nout > 2 ? outs[2] : nullptr;
  float* __restrict o3 = nout > 3 ? outs[3] : nullptr;
  switch (nout) {
    case 1:
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
      for (int64_t i = 0; i < n; ++i) o0[i] += in[i];
      break;
    case 2:
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
      for (int64_t i = 0; i < n; ++i) { o0[i] += in[i]; o1[i] += in[i]; }
      break;
    case 3:
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
      for (int64_t i = 0; i < n; ++i) { o0[i] += in[i]; o1[i] += in[i]; o2[i] += in[i]; }
      break;
    default:
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
      for (int64_t i = 0; i < n; ++i) { o0[i] += in[i]; o1[i] += in[i]; o2[i] += in[i]; o3[i] += in[i]; }
  }
}

}  // namespace fusetrain
