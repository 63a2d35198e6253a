// Dropout and the fused epilogue y = dropout(act(x + bias)) on the GPU, forward and backward, on
// the element math of fusetrain/dropout.h. Masks come from philox.h with the CPU's element ->
// (block, word) mapping and threshold test, so a (seed, offset) pair drops the same elements on
// either device.
#include <cmath>

#include "common.cuh"
#include "fusetrain/dropout.h"

namespace fusetrain {

using namespace gpu;

namespace {

// ---- forward ----------------------------------------------------------------------------

// x, y: (N, F) flat, y may alias x; bias: (F,) or null.
template <Act A, bool kDrop>
struct EpilogueForward {
  int64_t F;
  const float *x, *bias;
  float* y;
  float slope;
  DropoutArgs d;
  bool vec;
  __device__ __forceinline__ void operator()(int64_t e0, int cnt) const {
    float r[4];
    load4(r, x, e0, cnt, vec);
    uint32_t w[4];
    if constexpr (kDrop) dropout_words(w, d.seed, d.offset, e0, cnt);
    int64_t row, col = 0;
    if (bias) divmod(e0, F, row, col);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      r[j] = epilogue_forward<A, kDrop>(bias ? r[j] + bias[col] : r[j], slope, kDrop && dropout_keep(w[j], d.threshold),
                                        d.scale);
      if (bias && ++col == F) col = 0;
    }
    store4(y, e0, cnt, r, vec);
  }
};

template <Act A>
void forward_act(const float* x, const float* bias, float* y, int64_t N, int64_t F, float slope, double p,
                 const DropoutArgs& d, cudaStream_t stream) {
  const bool vec = aligned16({x, y});
  const char* name = "bias_act_dropout_forward";
  if (p > 0.0)
    launch_quads(EpilogueForward<A, true>{F, x, bias, y, slope, d, vec}, N * F, stream, name);
  else
    launch_quads(EpilogueForward<A, false>{F, x, bias, y, slope, d, vec}, N * F, stream, name);
}

// ---- backward ---------------------------------------------------------------------------

// dx = dy * keep/(1-p) * act'(pre), act' computed from the forward output y. dx may alias dy.
template <Act A, MaskFrom M>
struct EpilogueBackward {
  const float *dy, *y;
  float* dx;
  float slope;
  DropoutArgs d;
  bool vec;

  __device__ __forceinline__ void grad(int64_t e0, int cnt, bool v4, float (&g)[4]) const {
    float a[4];
    load4(g, dy, e0, cnt, v4);
    load4(a, y, e0, cnt, v4);
    uint32_t w[4];
    if constexpr (M == MaskFrom::kKeep) dropout_words(w, d.seed, d.offset, e0, cnt);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const bool keep = M == MaskFrom::kKeep && dropout_keep(w[j], d.threshold);
      g[j] = epilogue_backward<A, M>(g[j], a[j], keep, slope, d.scale, d.inv_scale);
    }
    store4(dx, e0, cnt, g, v4);
  }

  // Flat driver: dx only.
  __device__ __forceinline__ void operator()(int64_t e0, int cnt) const {
    float g[4];
    grad(e0, cnt, vec, g);
  }

  // Column-tile driver: dx, plus the column sums of dx for dbias (vec here means F % 4 == 0).
  __device__ __forceinline__ void quad(int64_t, int64_t, int64_t e0, int cnt, double2 (&acc)[4]) const {
    float g[4];
    grad(e0, cnt, vec, g);
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (j < cnt) acc[j].x += double(g[j]);
  }
};

template <Act A, MaskFrom M>
void backward_run(const float* dy, const float* y, float* dx, float* dbias, int64_t N, int64_t F, float slope,
                  const DropoutArgs& d, cudaStream_t stream) {
  const char* name = "bias_act_dropout_backward";
  if (dbias == nullptr) {
    const bool vec = aligned16({dy, y, dx});
    launch_quads(EpilogueBackward<A, M>{dy, y, dx, slope, d, vec}, N * F, stream, name);
    return;
  }
  const bool vec = F % 4 == 0 && aligned16({dy, y, dx});
  const ColumnPlan plan = column_plan(N, F);
  Scratch scratch(sizeof(double2) * size_t(plan.chunks * F), stream);
  double2* partial = scratch.as<double2>();
  launch_column_partials(EpilogueBackward<A, M>{dy, y, dx, slope, d, vec}, N, F, plan, partial, stream, name);
  launch_add_column_sums(partial, plan.chunks, F, dbias, nullptr, stream, name);
}

template <Act A>
void backward_act(const float* dy, const float* y, float* dx, float* dbias, int64_t N, int64_t F, float slope, double p,
                  const DropoutArgs& d, cudaStream_t stream) {
  if (p == 0.0) return backward_run<A, MaskFrom::kNone>(dy, y, dx, dbias, N, F, slope, d, stream);
  if constexpr (A == Act::kRelu) {
    backward_run<A, MaskFrom::kSign>(dy, y, dx, dbias, N, F, slope, d, stream);
  } else {
    backward_run<A, MaskFrom::kKeep>(dy, y, dx, dbias, N, F, slope, d, stream);
  }
}

// ---- mask and Philox hooks ----------------------------------------------------------------

struct MaskBytes {
  uint8_t* keep;
  DropoutArgs d;
  __device__ __forceinline__ void operator()(int64_t e0, int cnt) const {
    uint32_t w[4];
    dropout_words(w, d.seed, d.offset, e0, cnt);
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (j < cnt) keep[e0 + j] = dropout_keep(w[j], d.threshold) ? 1 : 0;
  }
};

__global__ void philox_one(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                           uint32_t k1, uint32_t* out) {
  const Philox4 r = fusetrain::philox4x32_10(c0, c1, c2, c3, k0, k1);
  for (int j = 0; j < 4; ++j) out[j] = r.v[j];
}

}  // namespace

void bias_act_dropout_forward(const float* x, const float* bias, float* y, int64_t N, int64_t F, Act act, float slope,
                              double p, uint64_t seed, uint64_t offset, uint8_t* bits, cudaStream_t stream) {
  check_size(N, "N");
  check_size(F, "F");
  check(bits == nullptr, "mask_bits is supported on the CPU only");
  const DropoutArgs d = dropout_args(p, seed, offset);
  if (N * F == 0) return;
  with_act(act, [&](auto A) { forward_act<decltype(A)::value>(x, bias, y, N, F, slope, p, d, stream); });
}

void bias_act_dropout_backward(const float* dy, const float* y, float* dx, float* dbias, int64_t N, int64_t F, Act act,
                               float slope, double p, uint64_t seed, uint64_t offset, const uint8_t* bits,
                               cudaStream_t stream) {
  check_size(N, "N");
  check_size(F, "F");
  check(bits == nullptr, "mask_bits is supported on the CPU only");
  const DropoutArgs d = dropout_args(p, seed, offset);
  if (N * F == 0) return;
  with_act(act, [&](auto A) { backward_act<decltype(A)::value>(dy, y, dx, dbias, N, F, slope, p, d, stream); });
}

void dropout_mask(uint8_t* keep, int64_t n, double p, uint64_t seed, uint64_t offset, cudaStream_t stream) {
  check_size(n, "n");
  launch_quads(MaskBytes{keep, dropout_args(p, seed, offset)}, n, stream, "dropout_mask");
}

void philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1, uint32_t out[4],
                   cudaStream_t stream) {
  Scratch scratch(4 * sizeof(uint32_t), stream);
  philox_one<<<1, 1, 0, stream>>>(c0, c1, c2, c3, k0, k1, scratch.as<uint32_t>());
  check_launch("philox4x32_10");
  check_cuda(cudaMemcpyAsync(out, scratch.as<uint32_t>(), 4 * sizeof(uint32_t), cudaMemcpyDeviceToHost, stream),
             "cudaMemcpyAsync");
  check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
}

}  // namespace fusetrain
