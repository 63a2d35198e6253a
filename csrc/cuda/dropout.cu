// Dropout and the fused epilogue y = dropout(act(x + bias)) on the GPU, forward and backward.
// Masks come from philox.h with the CPU's element -> (block, word) mapping and threshold test, so
// a (seed, offset) pair drops the same elements on either device.
// Semantics: csrc/include/fusetrain/dropout.h.
#include <cmath>

#include "common.cuh"
#include "fusetrain/cuda_ops.h"
#include "fusetrain/dropout.h"

namespace fusetrain {
namespace gpu {
namespace {

struct DropArgs {
  float scale, inv_scale;  // 1/(1-p) and 1-p, rounded to float as on the CPU
  uint32_t threshold;
  uint64_t seed, offset;
};

DropArgs make_drop_args(double p, uint64_t seed, uint64_t offset) {
  require(p >= 0.0 && p < 1.0, "dropout p must be in [0, 1), got " + std::to_string(p));
  require(offset % 4 == 0, "dropout offset must be a multiple of 4, got " + std::to_string(offset));
  return DropArgs{float(1.0 / (1.0 - p)), float(1.0 - p), dropout_threshold(p), seed, offset};
}

// ---- forward ----------------------------------------------------------------------------

// x, y: (N, F) flat, y may alias x; bias: (F,) or null.
template <Act A, bool kDrop>
struct EpilogueForward {
  const float* x;
  const float* bias;
  float* y;
  int64_t F;
  float slope;
  DropArgs d;
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
      float v = act_fwd<A>(bias ? r[j] + bias[col] : r[j], slope);
      if constexpr (kDrop) v = keep_word(w[j], d.threshold) ? v * d.scale : 0.0f;
      r[j] = v;
      if (bias && ++col == F) col = 0;
    }
    store4(y, e0, cnt, r, vec);
  }
};

template <Act A>
void forward_act(const float* x, const float* bias, float* y, int64_t N, int64_t F, float slope,
                 double p, const DropArgs& d, cudaStream_t stream) {
  const bool vec = aligned16({x, y});
  const char* name = "bias_act_dropout_forward";
  if (p > 0.0) launch_quads(EpilogueForward<A, true>{x, bias, y, F, slope, d, vec}, N * F, stream, name);
  else launch_quads(EpilogueForward<A, false>{x, bias, y, F, slope, d, vec}, N * F, stream, name);
}

// ---- backward ---------------------------------------------------------------------------

// Where the keep mask comes from: none (p == 0), the sign of y (ReLU: a dropped or inactive
// element has y == 0), or regenerated from (seed, offset).
enum class MaskFrom { kNone, kSign, kPhilox };

// dx = dy * keep/(1-p) * act'(pre), act' computed from the forward output y. dx may alias dy.
template <Act A, MaskFrom M>
struct EpilogueBackward {
  const float* dy;
  const float* y;
  float* dx;
  float slope;
  DropArgs d;
  bool vec;

  __device__ __forceinline__ void grad(int64_t e0, int cnt, bool v4, float (&g)[4]) const {
    float a[4];
    load4(g, dy, e0, cnt, v4);
    load4(a, y, e0, cnt, v4);
    uint32_t w[4];
    if constexpr (M == MaskFrom::kPhilox) dropout_words(w, d.seed, d.offset, e0, cnt);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if constexpr (M == MaskFrom::kNone) {
        g[j] = g[j] * act_grad<A>(a[j], slope);
      } else if constexpr (M == MaskFrom::kSign) {
        g[j] = a[j] <= 0.0f ? 0.0f : g[j] * d.scale;
      } else {
        g[j] = keep_word(w[j], d.threshold) ? g[j] * d.scale * act_grad<A>(a[j] * d.inv_scale, slope) : 0.0f;
      }
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
void backward_run(const float* dy, const float* y, float* dx, float* dbias, int64_t N, int64_t F,
                  float slope, const DropArgs& d, cudaStream_t stream) {
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
void backward_act(const float* dy, const float* y, float* dx, float* dbias, int64_t N, int64_t F,
                  float slope, double p, const DropArgs& d, cudaStream_t stream) {
  if (p == 0.0) return backward_run<A, MaskFrom::kNone>(dy, y, dx, dbias, N, F, slope, d, stream);
  if constexpr (A == Act::kRelu) {
    backward_run<A, MaskFrom::kSign>(dy, y, dx, dbias, N, F, slope, d, stream);
  } else {
    backward_run<A, MaskFrom::kPhilox>(dy, y, dx, dbias, N, F, slope, d, stream);
  }
}

// ---- mask and Philox hooks ----------------------------------------------------------------

struct MaskBytes {
  uint8_t* keep;
  DropArgs d;
  __device__ __forceinline__ void operator()(int64_t e0, int cnt) const {
    uint32_t w[4];
    dropout_words(w, d.seed, d.offset, e0, cnt);
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (j < cnt) keep[e0 + j] = keep_word(w[j], d.threshold) ? 1 : 0;
  }
};

__global__ void philox_one(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                           uint32_t k1, uint32_t* out) {
  const Philox4 r = fusetrain::philox4x32_10(c0, c1, c2, c3, k0, k1);
  for (int j = 0; j < 4; ++j) out[j] = r.v[j];
}

void check_epilogue(int64_t N, int64_t F, int act) {
  require(N >= 0 && F >= 0, "N and F must be >= 0, got N=" + std::to_string(N) + " F=" + std::to_string(F));
  require(act >= 0 && act <= 4, "act code must be in [0, 4], got " + std::to_string(act));
}

}  // namespace

void bias_act_dropout_forward(const float* x, const float* bias, float* y, int64_t N, int64_t F,
                              int act, float slope, double p, uint64_t seed, uint64_t offset,
                              cudaStream_t stream) {
  check_epilogue(N, F, act);
  const DropArgs d = make_drop_args(p, seed, offset);
  require_ptr(x, N * F, "x");
  require_ptr(y, N * F, "out");
  if (N * F == 0) return;
  switch (static_cast<Act>(act)) {
    case Act::kIdentity: return forward_act<Act::kIdentity>(x, bias, y, N, F, slope, p, d, stream);
    case Act::kRelu: return forward_act<Act::kRelu>(x, bias, y, N, F, slope, p, d, stream);
    case Act::kLeakyRelu: return forward_act<Act::kLeakyRelu>(x, bias, y, N, F, slope, p, d, stream);
    case Act::kTanh: return forward_act<Act::kTanh>(x, bias, y, N, F, slope, p, d, stream);
    case Act::kSigmoid: return forward_act<Act::kSigmoid>(x, bias, y, N, F, slope, p, d, stream);
  }
}

void bias_act_dropout_backward(const float* dy, const float* y, float* dx, float* dbias, int64_t N,
                               int64_t F, int act, float slope, double p, uint64_t seed,
                               uint64_t offset, cudaStream_t stream) {
  check_epilogue(N, F, act);
  const DropArgs d = make_drop_args(p, seed, offset);
  require_ptr(dy, N * F, "grad_out");
  require_ptr(y, N * F, "out");
  require_ptr(dx, N * F, "grad_input");
  if (N * F == 0) return;
  switch (static_cast<Act>(act)) {
    case Act::kIdentity: return backward_act<Act::kIdentity>(dy, y, dx, dbias, N, F, slope, p, d, stream);
    case Act::kRelu: return backward_act<Act::kRelu>(dy, y, dx, dbias, N, F, slope, p, d, stream);
    case Act::kLeakyRelu: return backward_act<Act::kLeakyRelu>(dy, y, dx, dbias, N, F, slope, p, d, stream);
    case Act::kTanh: return backward_act<Act::kTanh>(dy, y, dx, dbias, N, F, slope, p, d, stream);
    case Act::kSigmoid: return backward_act<Act::kSigmoid>(dy, y, dx, dbias, N, F, slope, p, d, stream);
  }
}

void dropout_mask(uint8_t* keep, int64_t n, double p, uint64_t seed, uint64_t offset,
                  cudaStream_t stream) {
  require(n >= 0, "n must be >= 0, got " + std::to_string(n));
  require_ptr(keep, n, "keep");
  launch_quads(MaskBytes{keep, make_drop_args(p, seed, offset)}, n, stream, "dropout_mask");
}

void philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1,
                   uint32_t out[4], cudaStream_t stream) {
  Scratch scratch(4 * sizeof(uint32_t), stream);
  philox_one<<<1, 1, 0, stream>>>(c0, c1, c2, c3, k0, k1, scratch.as<uint32_t>());
  check_launch("philox4x32_10");
  check_cuda(cudaMemcpyAsync(out, scratch.as<uint32_t>(), 4 * sizeof(uint32_t), cudaMemcpyDeviceToHost, stream),
             "cudaMemcpyAsync");
  check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
}

}  // namespace gpu
}  // namespace fusetrain
