// Batch normalization on the GPU over x laid out (N, C, S), mirroring csrc/cpu/batchnorm.cpp.
// Forward: per-channel sums of x and x^2 in double (column tiles when S == 1, channel planes
// otherwise; per-block partials combined in a fixed order), one thread per channel folds them
// into alpha = invstd*w, beta = b - mean*alpha (and the running statistics), then one quad pass
// y = x*alpha + beta (+ReLU, +dropout). Backward: sums of dy' and dy'*(x - mean) the same way,
// then dx = k*dy' + kx*(x - mean) + k0 per channel. Coefficients and element math:
// fusetrain/batchnorm.h, shared with the CPU.
#include <cmath>

#include "common.cuh"
#include "fusetrain/batchnorm.h"

namespace fusetrain {

using namespace gpu;

namespace {

// Sums of (x, x^2) per channel. vec: float4 loads in the S == 1 path (C % 4 == 0, aligned).
struct StatsTerms {
  const float* x;
  bool vec;
  // S > 1: `width` (1 or 4) values of one channel's run.
  __device__ __forceinline__ double2 span(int64_t e, int64_t, int width) const {
    float r[4];
    load4(r, x, e, width, width == 4);
    double2 acc = make_double2(0.0, 0.0);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (j >= width) break;
      const double v = double(r[j]);
      acc.x += v;
      acc.y += v * v;
    }
    return acc;
  }
  // S == 1: the quad is 4 channels c0.. of one row.
  __device__ __forceinline__ void quad(int64_t, int64_t, int64_t e0, int cnt, double2 (&acc)[4]) const {
    float r[4];
    load4(r, x, e0, cnt, vec);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (j >= cnt) break;
      const double v = double(r[j]);
      acc[j].x += v;
      acc[j].y += v * v;
    }
  }
};

__device__ __forceinline__ float dy_through(float dy, float y, bool relu, float ds) {
  return relu ? bn_grad_through<true>(dy, y, ds) : dy;
}

// Sums of (dy', dy'*(x - mean)) per channel; vec as in StatsTerms.
struct GradTerms {
  const float *dy, *x, *y, *mean;
  bool relu;
  float ds;
  bool vec;
  // S > 1: `width` (1 or 4) values of channel c's run.
  __device__ __forceinline__ double2 span(int64_t e, int64_t c, int width) const {
    float g[4], xv[4], yv[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    load4(g, dy, e, width, width == 4);
    load4(xv, x, e, width, width == 4);
    if (relu) load4(yv, y, e, width, width == 4);
    const double m = double(mean[c]);
    double2 acc = make_double2(0.0, 0.0);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (j >= width) break;
      const double gd = double(dy_through(g[j], yv[j], relu, ds));
      acc.x += gd;
      acc.y += gd * (double(xv[j]) - m);
    }
    return acc;
  }
  // S == 1: the quad is 4 channels c0.. of one row.
  __device__ __forceinline__ void quad(int64_t, int64_t c0, int64_t e0, int cnt, double2 (&acc)[4]) const {
    float g[4], xv[4], yv[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    load4(g, dy, e0, cnt, vec);
    load4(xv, x, e0, cnt, vec);
    if (relu) load4(yv, y, e0, cnt, vec);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (j >= cnt) break;
      const double gd = double(dy_through(g[j], yv[j], relu, ds));
      acc[j].x += gd;
      acc[j].y += gd * (double(xv[j]) - double(mean[c0 + j]));
    }
  }
};

// Per-channel sums into partial[chunk][C], with the driver that suits the layout: column tiles
// for (N, C) (S == 1, channels contiguous), channel planes otherwise.
struct ChannelPlan {
  ColumnPlan columns;
  PlanePlan planes;
  int64_t chunks;  // 0 when there is nothing to sum
};

ChannelPlan channel_plan(int64_t N, int64_t C, int64_t S, bool aligned) {
  ChannelPlan p{};
  if (N * S == 0 || C == 0) return p;
  if (S == 1) {
    p.columns = column_plan(N, C);
    p.chunks = p.columns.chunks;
  } else {
    p.planes = plane_plan(N, C, S, aligned);
    p.chunks = p.planes.chunks;
  }
  return p;
}

template <class Terms>
void channel_partials(const Terms& terms, int64_t N, int64_t C, int64_t S, const ChannelPlan& plan,
                      double2* partial, cudaStream_t stream, const char* name) {
  if (plan.chunks == 0) return;
  if (S == 1) launch_column_partials(terms, N, C, plan.columns, partial, stream, name);
  else launch_plane_partials(terms, N, C, S, plan.planes, partial, stream, name);
}

__global__ void train_coefficients(const double2* partial, int64_t chunks, int64_t C, double cnt, double eps,
                                   double momentum, const float* w, const float* b, float* mean, float* invstd,
                                   float* running_mean, float* running_var, float* alpha, float* beta) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const double2 s = sum_partials(partial, chunks, C, c);
  const BnAffine f =
      bn_train_coefficients(c, s.x, s.y, cnt, eps, momentum, w, b, mean, invstd, running_mean, running_var);
  alpha[c] = f.alpha;
  beta[c] = f.beta;
}

__global__ void eval_coefficients(int64_t C, double eps, const float* w, const float* b, const float* running_mean,
                                  const float* running_var, float* invstd, float* alpha, float* beta) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const BnAffine f = bn_eval_coefficients(c, eps, w, b, running_mean, running_var, invstd);
  alpha[c] = f.alpha;
  beta[c] = f.beta;
}

// Channel index of elements e0, e0+1, ... of (N, C, S), stepped without dividing per element.
struct ChannelCursor {
  int64_t c, s;
  __device__ __forceinline__ ChannelCursor(int64_t e0, int64_t C, int64_t S) {
    int64_t plane, unused;
    divmod(e0, S, plane, s);
    divmod(plane, C, unused, c);
  }
  __device__ __forceinline__ void next(int64_t C, int64_t S) {
    if (++s == S) {
      s = 0;
      if (++c == C) c = 0;
    }
  }
};

// y = x*alpha[c] + beta[c], then ReLU and dropout when asked. y may alias x.
template <bool kDrop>
struct ApplyForward {
  const float* x;
  float* y;
  const float* alpha;
  const float* beta;
  int64_t C, S;
  bool relu;
  float scale;
  uint32_t threshold;
  uint64_t seed, offset;
  bool vec;
  __device__ __forceinline__ void operator()(int64_t e0, int cnt) const {
    float r[4];
    load4(r, x, e0, cnt, vec);
    uint32_t w[4];
    if constexpr (kDrop) dropout_words(w, seed, offset, e0, cnt);
    ChannelCursor cur(e0, C, S);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const bool keep = kDrop && dropout_keep(w[j], threshold);
      r[j] = relu ? bn_apply<true, kDrop>(r[j], alpha[cur.c], beta[cur.c], keep, scale)
                  : bn_apply<false, kDrop>(r[j], alpha[cur.c], beta[cur.c], keep, scale);
      cur.next(C, S);
    }
    store4(y, e0, cnt, r, vec);
  }
};

__global__ void backward_coefficients(const double2* partial, int64_t chunks, int64_t C, double cnt, bool need_sums,
                                      bool training, const float* w, const float* invstd, float* dw, float* db,
                                      float* k, float* kx, float* k0) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const double2 s = need_sums ? sum_partials(partial, chunks, C, c) : make_double2(0.0, 0.0);
  const BnGrad f = bn_backward_coefficients(c, s.x, s.y, cnt, need_sums, training, w, invstd, dw, db);
  k[c] = f.k;
  kx[c] = f.kx;
  k0[c] = f.k0;
}

// dx = k[c]*dy' + kx[c]*(x - mean[c]) + k0[c].
struct ApplyBackward {
  const float* dy;
  const float* x;
  const float* y;
  const float* mean;
  const float* k;
  const float* kx;
  const float* k0;
  float* dx;
  int64_t C, S;
  bool relu;
  float ds;
  bool vec;
  __device__ __forceinline__ void operator()(int64_t e0, int cnt) const {
    float g[4], xv[4], yv[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    load4(g, dy, e0, cnt, vec);
    load4(xv, x, e0, cnt, vec);
    if (relu) load4(yv, y, e0, cnt, vec);
    ChannelCursor cur(e0, C, S);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t c = cur.c;
      g[j] = bn_grad_apply(dy_through(g[j], yv[j], relu, ds), xv[j], mean[c], k[c], kx[c], k0[c]);
      cur.next(C, S);
    }
    store4(dx, e0, cnt, g, vec);
  }
};

unsigned channel_blocks(int64_t C) { return unsigned(cdiv(C, kThreads)); }

}  // namespace

void batchnorm_forward_train(const float* x, const float* w, const float* b, float* y, float* mean,
                             float* invstd, float* running_mean, float* running_var, int64_t N,
                             int64_t C, int64_t S, double eps, double momentum, bool relu,
                             double dropout_p, uint64_t seed, uint64_t offset, cudaStream_t stream) {
  check_batchnorm_train(N, C, S, relu, dropout_p, offset);
  const int64_t cnt = N * S, n = N * C * S;
  if (C == 0) return;
  const char* name = "batchnorm_forward_train";
  Scratch coef(2 * sizeof(float) * size_t(C), stream);
  float* alpha = coef.as<float>();
  float* beta = coef.as<float>(size_t(C));
  const bool x_aligned = aligned16({x});
  const ChannelPlan plan = channel_plan(N, C, S, x_aligned);
  Scratch sums(sizeof(double2) * size_t(plan.chunks * C), stream);
  double2* partial = sums.as<double2>();
  channel_partials(StatsTerms{x, x_aligned && C % 4 == 0}, N, C, S, plan, partial, stream, name);
  train_coefficients<<<channel_blocks(C), kThreads, 0, stream>>>(
      partial, plan.chunks, C, double(cnt), eps, momentum, w, b, mean, invstd, running_mean, running_var,
      alpha, beta);
  check_launch(name);
  const bool vec = aligned16({x, y});
  if (dropout_p > 0.0) {
    const ApplyForward<true> op{x, y, alpha, beta, C, S, relu, float(1.0 / (1.0 - dropout_p)),
                                dropout_threshold(dropout_p), seed, offset, vec};
    launch_quads(op, n, stream, name);
  } else {
    const ApplyForward<false> op{x, y, alpha, beta, C, S, relu, 1.0f, 0u, 0u, 0u, vec};
    launch_quads(op, n, stream, name);
  }
}

void batchnorm_forward_eval(const float* x, const float* w, const float* b,
                            const float* running_mean, const float* running_var, float* y,
                            float* invstd, int64_t N, int64_t C, int64_t S, double eps, bool relu,
                            cudaStream_t stream) {
  check_batchnorm_sizes(N, C, S);
  const int64_t n = N * C * S;
  if (C == 0) return;
  const char* name = "batchnorm_forward_eval";
  Scratch coef(2 * sizeof(float) * size_t(C), stream);
  float* alpha = coef.as<float>();
  float* beta = coef.as<float>(size_t(C));
  eval_coefficients<<<channel_blocks(C), kThreads, 0, stream>>>(C, eps, w, b, running_mean, running_var,
                                                                invstd, alpha, beta);
  check_launch(name);
  const ApplyForward<false> op{x, y, alpha, beta, C, S, relu, 1.0f, 0u, 0u, 0u, aligned16({x, y})};
  launch_quads(op, n, stream, name);
}

void batchnorm_backward(const float* dy, const float* x, const float* y, const float* w,
                        const float* mean, const float* invstd, float* dx, float* dw, float* db,
                        int64_t N, int64_t C, int64_t S, bool relu, double dropout_scale,
                        bool training, cudaStream_t stream) {
  check_batchnorm_sizes(N, C, S);
  const int64_t n = N * C * S;
  check(!relu || y != nullptr || n == 0, "batchnorm backward with relu needs the forward output");
  if (C == 0) return;
  const char* name = "batchnorm_backward";
  const float ds = float(dropout_scale);
  const bool need_sums = training || dw || db;
  const bool in_aligned = aligned16({dy, x, relu ? y : nullptr});
  const ChannelPlan plan = need_sums ? channel_plan(N, C, S, in_aligned) : ChannelPlan{};
  Scratch sums(sizeof(double2) * size_t(plan.chunks * C), stream);
  double2* partial = sums.as<double2>();
  channel_partials(GradTerms{dy, x, y, mean, relu, ds, in_aligned && C % 4 == 0}, N, C, S, plan, partial,
                   stream, name);
  Scratch coef(3 * sizeof(float) * size_t(C), stream);
  float* k = coef.as<float>();
  float* kx = coef.as<float>(size_t(C));
  float* k0 = coef.as<float>(2 * size_t(C));
  backward_coefficients<<<channel_blocks(C), kThreads, 0, stream>>>(
      partial, plan.chunks, C, double(N * S), need_sums, training, w, invstd, dw, db, k, kx, k0);
  check_launch(name);
  const bool vec = aligned16({dy, x, dx, relu ? y : nullptr});
  launch_quads(ApplyBackward{dy, x, y, mean, k, kx, k0, dx, C, S, relu, ds, vec}, n, stream, name);
}

}  // namespace fusetrain
