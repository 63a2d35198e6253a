// Bandwidth probes (CPU): the simplest streaming loops, the ceiling for memory-bound kernels.
#include "fusetrain/probe.h"

#include <atomic>

#include "fusetrain/common.h"
#include "fusetrain/parallel.h"
#include "tiles.h"

namespace fusetrain {
namespace {

void copy_run(const float* __restrict src, float* __restrict dst, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
}

void triad_run(float* __restrict a, const float* __restrict b, const float* __restrict c, float s, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) a[i] = b[i] + s * c[i];
}

// The streams of an optimizer update: one input read, nout arrays read and written.
template <int kOut>
void update_run(float* __restrict o0, float* __restrict o1, float* __restrict o2, float* __restrict o3,
                const float* __restrict in, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    o0[i] += in[i];
    if constexpr (kOut > 1) o1[i] += in[i];
    if constexpr (kOut > 2) o2[i] += in[i];
    if constexpr (kOut > 3) o3[i] += in[i];
  }
}

}  // namespace

void probe_copy(const float* src, float* dst, int64_t n) {
  check_size(n, "n");
  parallel_for(n, [=](int64_t lo, int64_t hi) { copy_run(src + lo, dst + lo, hi - lo); });
}

void probe_triad(float* a, const float* b, const float* c, float s, int64_t n) {
  check_size(n, "n");
  parallel_for(n, [=](int64_t lo, int64_t hi) { triad_run(a + lo, b + lo, c + lo, s, hi - lo); });
}

void probe_update(float* const* outs, int nout, const float* in, int64_t n) {
  check_size(n, "n");
  check(nout >= 1 && nout <= 4, "probe_update takes 1 to 4 outputs");
  float* o[4] = {outs[0], nout > 1 ? outs[1] : nullptr, nout > 2 ? outs[2] : nullptr, nout > 3 ? outs[3] : nullptr};
  parallel_for(n, [=](int64_t lo, int64_t hi) {
    auto at = [lo](float* q) { return q ? q + lo : nullptr; };
    switch (nout) {
      case 1:
        return update_run<1>(at(o[0]), nullptr, nullptr, nullptr, in + lo, hi - lo);
      case 2:
        return update_run<2>(at(o[0]), at(o[1]), nullptr, nullptr, in + lo, hi - lo);
      case 3:
        return update_run<3>(at(o[0]), at(o[1]), at(o[2]), nullptr, in + lo, hi - lo);
      default:
        return update_run<4>(at(o[0]), at(o[1]), at(o[2]), at(o[3]), in + lo, hi - lo);
    }
  });
}

double probe_fma(int64_t iters) {
  check(iters >= 1, "iters must be >= 1");
  const TileKernels& kn = tile_kernels();
  const int team = num_threads();
  std::atomic<int> sink{0};
  parallel_tasks(team, team, [&](int64_t, int) {
    if (kn.fma_probe(iters) == 12345.0f) sink.fetch_add(1);  // keeps the result alive
  });
  return 2.0 * double(kn.fma_ops) * double(kn.lanes) * double(iters) * double(team) + 0.0 * sink.load();
}

}  // namespace fusetrain
