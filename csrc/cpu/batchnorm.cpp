// Batch normalization (CPU) on x laid out (N, C, S). Forward: one statistics pass (sum and sum of
// squares in double) and one apply pass y = x*alpha[c] + beta[c] (+ReLU, +dropout). Backward:
// one reduction pass (sum dy, sum dy*(x-mean)) and one pass dx = k*dy + kx*(x - mean) + k0 per
// channel. The coefficients and element math are fusetrain/batchnorm.h's, shared with the GPU.
#include "fusetrain/batchnorm.h"

#include <algorithm>
#include <vector>

#include "fusetrain/common.h"
#include "fusetrain/parallel.h"
#include "philox_cpu.h"

namespace fusetrain {
namespace {

// Inner loops are plain functions with pointers and scalars passed by value: read through lambda
// captures they would sit in memory that the stores might alias, and the loops stayed scalar.

// dy' of element i (y is read only with kRelu: it may be null otherwise).
template <bool kRelu>
inline float grad_in(const float* dy, const float* y, int64_t i, float ds) {
  return bn_grad_through<kRelu>(dy[i], kRelu ? y[i] : 0.0f, ds);
}

// Row of C channels (the (N, C) layout): s[c] += f0, q[c] += f1 for the row's elements.
template <bool kBackward, bool kRelu>
void sums_row(const float* x, const float* dy, const float* y, const float* mean, float ds,
              int64_t C, double* __restrict s, double* __restrict q) {
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) {
    if constexpr (kBackward) {
      const double g = double(grad_in<kRelu>(dy, y, c, ds));
      s[c] += g;
      q[c] += g * (double(x[c]) - double(mean[c]));
    } else {
      const double v = double(x[c]);
      s[c] += v;
      q[c] += v * v;
    }
  }
}

// Run of S values of one channel (the (N, C, S > 1) layout): adds into s, q.
template <bool kBackward, bool kRelu>
void sums_run(const float* x, const float* dy, const float* y, float mean, float ds, int64_t S,
              double& s_out, double& q_out) {
  double s = 0.0, q = 0.0;
#pragma omp simd reduction(+ : s, q)
  for (int64_t i = 0; i < S; ++i) {
    if constexpr (kBackward) {
      const double g = double(grad_in<kRelu>(dy, y, i, ds));
      s += g;
      q += g * (double(x[i]) - double(mean));
    } else {
      const double v = double(x[i]);
      s += v;
      q += v * v;
    }
  }
  s_out += s;
  q_out += q;
}

// Per-channel sums over (N, S): statistics (forward) or sum dy', sum dy'*(x-mean) (backward).
// S == 1: rows in fixed parts with {parts, 2C} partials combined in part order (the same bits for
// any thread count up to reduction_parts' minimum); S > 1: channels shared out over threads.
template <bool kBackward, bool kRelu>
void channel_sums(const float* x, const float* dy, const float* y, const float* mean, float ds,
                  int64_t N, int64_t C, int64_t S, std::vector<double>& s0, std::vector<double>& s1) {
  s0.assign(size_t(C), 0.0);
  s1.assign(size_t(C), 0.0);
  const int64_t n = N * C * S;
  if (S == 1) {
    // Rows in fixed parts, each with its own {2C} partials, combined in part order.
    const int parts = reduction_parts(N);
    const int64_t per = (N + parts - 1) / parts;
    std::vector<double> part(size_t(parts) * size_t(2 * C), 0.0);
    parallel_tasks(parts, threads_for(n), [&](int64_t q, int) {
      double* a0 = part.data() + size_t(q) * size_t(2 * C);
      for (int64_t row = q * per; row < std::min(N, (q + 1) * per); ++row) {
        const int64_t o = row * C;
        sums_row<kBackward, kRelu>(x + o, dy ? dy + o : nullptr, y ? y + o : nullptr, mean, ds, C, a0, a0 + C);
      }
    });
    for (int q = 0; q < parts; ++q)
      for (int64_t c = 0; c < C; ++c) {
        s0[size_t(c)] += part[size_t(q) * size_t(2 * C) + size_t(c)];
        s1[size_t(c)] += part[size_t(q) * size_t(2 * C) + size_t(C + c)];
      }
  } else {
    parallel_chunks(C, n, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        double a0 = 0.0, a1 = 0.0;
        const float m = mean ? mean[c] : 0.0f;
        for (int64_t b = 0; b < N; ++b) {
          const int64_t o = (b * C + c) * S;
          sums_run<kBackward, kRelu>(x + o, dy ? dy + o : nullptr, y ? y + o : nullptr, m, ds, S, a0, a1);
        }
        s0[size_t(c)] = a0;
        s1[size_t(c)] = a1;
      }
    });
  }
}

// Forward apply on a run: y = x*alpha + beta (+ReLU, +dropout). kVec: alpha/beta per element
// (a row of channels) else one value for the run.
template <bool kVec, bool kRelu, bool kDrop>
void apply_run(const float* x, float* y, const float* al, const float* be, float a1, float b1,
               const uint32_t* w, int64_t len, uint32_t thr, float scale) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i)
    y[i] = bn_apply<kRelu, kDrop>(x[i], kVec ? al[i] : a1, kVec ? be[i] : b1, kDrop && dropout_keep(w[i], thr), scale);
}

// Backward apply on a run: dx = k*dy' + kx*(x - mean) + k0.
template <bool kVec, bool kRelu>
void grad_run(const float* dy, const float* y, const float* x, float* dx, const float* k,
              const float* kx, const float* k0, const float* mean, float k1, float kx1, float k01,
              float m1, float ds, int64_t len) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i)
    dx[i] = bn_grad_apply(grad_in<kRelu>(dy, y, i, ds), x[i], kVec ? mean[i] : m1, kVec ? k[i] : k1, kVec ? kx[i] : kx1,
                          kVec ? k0[i] : k01);
}

// Calls run(offset, channel, length, words) over the tensor in mask tiles, split into runs that
// are either one row of channels (S == 1, channel = first channel) or part of one channel's S values.
template <class Run>
void channel_runs(int64_t N, int64_t C, int64_t S, bool words, uint64_t seed, uint64_t offset,
                  Run&& run) {
  for_each_mask_tile(N * C * S, words, seed, offset, [&](int64_t e0, int64_t e1, const uint32_t* w) {
    for (int64_t e = e0; e < e1;) {
      const int64_t c = S == 1 ? e % C : (e / S) % C;
      const int64_t end = S == 1 ? std::min(e1, e - c + C) : std::min(e1, (e / S + 1) * S);
      run(e, c, end - e, w ? w + (e - e0) : nullptr);
      e = end;
    }
  });
}

template <bool kRelu, bool kDrop>
void forward_apply(const float* x, float* y, const float* al, const float* be, int64_t N, int64_t C,
                   int64_t S, uint64_t seed, uint64_t offset, uint32_t thr, float scale) {
  channel_runs(N, C, S, kDrop, seed, offset, [=](int64_t e, int64_t c, int64_t len, const uint32_t* w) {
    if (S == 1) apply_run<true, kRelu, kDrop>(x + e, y + e, al + c, be + c, 0.f, 0.f, w, len, thr, scale);
    else apply_run<false, kRelu, kDrop>(x + e, y + e, nullptr, nullptr, al[c], be[c], w, len, thr, scale);
  });
}

template <bool kRelu>
void backward_apply(const float* dy, const float* y, const float* x, float* dx, const float* k,
                    const float* kx, const float* k0, const float* mean, float ds, int64_t N,
                    int64_t C, int64_t S) {
  channel_runs(N, C, S, false, 0, 0, [=](int64_t e, int64_t c, int64_t len, const uint32_t*) {
    const float* yy = kRelu ? y + e : nullptr;
    if (S == 1)
      grad_run<true, kRelu>(dy + e, yy, x + e, dx + e, k + c, kx + c, k0 + c, mean + c, 0.f, 0.f, 0.f,
                            0.f, ds, len);
    else
      grad_run<false, kRelu>(dy + e, yy, x + e, dx + e, nullptr, nullptr, nullptr, nullptr, k[c], kx[c],
                             k0[c], mean[c], ds, len);
  });
}

// Small planes (S > 1 but short): per-channel runs of a few floats cost more in loop overhead than
// in memory. Such a tensor is run as (N, C*S) rows with the vectorized row kernels, whose
// per-position sums are then folded per channel (in position order); per-channel constants are
// repeated S times. The element order, and so a fused dropout's mask, is unchanged.
constexpr int64_t kFoldBelow = 64;

inline bool fold_rows(int64_t S) { return S > 1 && S < kFoldBelow; }

std::vector<float> repeat_per_position(const float* per_channel, int64_t C, int64_t S) {
  std::vector<float> v(size_t(C * S));
  for (int64_t c = 0; c < C; ++c) std::fill(v.begin() + c * S, v.begin() + (c + 1) * S, per_channel[c]);
  return v;
}

void fold_sums(std::vector<double>& sums, int64_t C, int64_t S) {
  for (int64_t c = 0; c < C; ++c) {
    double t = 0.0;
    for (int64_t i = 0; i < S; ++i) t += sums[size_t(c * S + i)];
    sums[size_t(c)] = t;
  }
  sums.resize(size_t(C));
}

// (N, C, S > 1): each channel's reduction and apply passes run back to back on one thread, so the
// second pass finds the channel's N runs of S in L2/L3 instead of DRAM (the tensor is read from
// memory once), and each channel's sum is one thread's sequential sum (the same bits for any thread
// count). (N, C) and small planes are not done this way: 64 bytes from each 4 KiB-strided row defeat
// the prefetchers and the TLB (measured 2.4x slower than two full passes over (4096, 1024)).
bool per_channel(int64_t N, int64_t C, int64_t S) {
  if (S < kFoldBelow) return false;
  return N * C * S <= kParallelGrain || C >= 4 * num_threads();
}

template <bool kRelu>
void forward_train_per_channel(const float* x, const float* w, const float* b, float* y, float* mean,
                               float* invstd, float* running_mean, float* running_var, int64_t N, int64_t C,
                               int64_t S, double eps, double momentum) {
  parallel_chunks(C, N * C * S, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      double s0 = 0.0, s1 = 0.0;
      for (int64_t n = 0; n < N; ++n)
        sums_run<false, false>(x + (n * C + c) * S, nullptr, nullptr, 0.0f, 1.0f, S, s0, s1);
      const BnAffine f =
          bn_train_coefficients(c, s0, s1, double(N * S), eps, momentum, w, b, mean, invstd, running_mean, running_var);
      for (int64_t n = 0; n < N; ++n) {
        const int64_t o = (n * C + c) * S;
        apply_run<false, kRelu, false>(x + o, y + o, nullptr, nullptr, f.alpha, f.beta, nullptr, S, 0, 1.0f);
      }
    }
  });
}

template <bool kRelu>
void backward_per_channel(const float* dy, const float* x, const float* y, const float* w, const float* mean,
                          const float* invstd, float* dx, float* dw, float* db, int64_t N, int64_t C, int64_t S,
                          float ds, bool need_sums, bool training) {
  parallel_chunks(C, N * C * S, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      double s0 = 0.0, s1 = 0.0;
      if (need_sums)
        for (int64_t n = 0; n < N; ++n) {
          const int64_t o = (n * C + c) * S;
          sums_run<true, kRelu>(x + o, dy + o, kRelu ? y + o : nullptr, mean[c], ds, S, s0, s1);
        }
      const BnGrad k = bn_backward_coefficients(c, s0, s1, double(N * S), need_sums, training, w, invstd, dw, db);
      for (int64_t n = 0; n < N; ++n) {
        const int64_t o = (n * C + c) * S;
        grad_run<false, kRelu>(dy + o, kRelu ? y + o : nullptr, x + o, dx + o, nullptr, nullptr, nullptr, nullptr, k.k,
                               k.kx, k.k0, mean[c], ds, S);
      }
    }
  });
}

}  // namespace

void batchnorm_forward_train(const float* x, const float* w, const float* b, float* y, float* mean,
                             float* invstd, float* running_mean, float* running_var, int64_t N,
                             int64_t C, int64_t S, double eps, double momentum, bool relu,
                             double dropout_p, uint64_t seed, uint64_t offset) {
  check_batchnorm_train(N, C, S, relu, dropout_p, offset);
  if (dropout_p == 0.0 && per_channel(N, C, S)) {  // a fused dropout draws its mask in element order
    if (relu) forward_train_per_channel<true>(x, w, b, y, mean, invstd, running_mean, running_var, N, C, S, eps, momentum);
    else forward_train_per_channel<false>(x, w, b, y, mean, invstd, running_mean, running_var, N, C, S, eps, momentum);
    return;
  }
  const bool fold = fold_rows(S);
  const int64_t C_ = fold ? C * S : C, S_ = fold ? 1 : S;  // the layout the passes run on
  std::vector<double> s0, s1;
  channel_sums<false, false>(x, nullptr, nullptr, nullptr, 1.0f, N, C_, S_, s0, s1);
  if (fold) {
    fold_sums(s0, C, S);
    fold_sums(s1, C, S);
  }
  std::vector<float> alpha(static_cast<size_t>(C)), beta(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const BnAffine f = bn_train_coefficients(c, s0[size_t(c)], s1[size_t(c)], double(N * S), eps, momentum, w, b, mean,
                                             invstd, running_mean, running_var);
    alpha[size_t(c)] = f.alpha;
    beta[size_t(c)] = f.beta;
  }
  if (fold) {
    alpha = repeat_per_position(alpha.data(), C, S);
    beta = repeat_per_position(beta.data(), C, S);
  }
  const uint32_t thr = dropout_threshold(dropout_p);
  const float scale = float(1.0 / (1.0 - dropout_p));
  const float* al = alpha.data();
  const float* be = beta.data();
  if (dropout_p > 0.0) forward_apply<true, true>(x, y, al, be, N, C_, S_, seed, offset, thr, scale);
  else if (relu) forward_apply<true, false>(x, y, al, be, N, C_, S_, seed, offset, thr, scale);
  else forward_apply<false, false>(x, y, al, be, N, C_, S_, seed, offset, thr, scale);
}

void batchnorm_forward_eval(const float* x, const float* w, const float* b,
                            const float* running_mean, const float* running_var, float* y,
                            float* invstd, int64_t N, int64_t C, int64_t S, double eps, bool relu) {
  check_batchnorm_sizes(N, C, S);
  std::vector<float> alpha(static_cast<size_t>(C)), beta(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const BnAffine f = bn_eval_coefficients(c, eps, w, b, running_mean, running_var, invstd);
    alpha[size_t(c)] = f.alpha;
    beta[size_t(c)] = f.beta;
  }
  if (relu) forward_apply<true, false>(x, y, alpha.data(), beta.data(), N, C, S, 0, 0, 0, 1.0f);
  else forward_apply<false, false>(x, y, alpha.data(), beta.data(), N, C, S, 0, 0, 0, 1.0f);
}

void batchnorm_backward(const float* dy, const float* x, const float* y, const float* w,
                        const float* mean, const float* invstd, float* dx, float* dw, float* db,
                        int64_t N, int64_t C, int64_t S, bool relu, double dropout_scale,
                        bool training) {
  check_batchnorm_sizes(N, C, S);
  check(!relu || y != nullptr, "batchnorm backward with relu needs the forward output");
  const float ds = float(dropout_scale);
  const bool need_sums = training || dw || db;
  if (per_channel(N, C, S)) {
    if (relu) backward_per_channel<true>(dy, x, y, w, mean, invstd, dx, dw, db, N, C, S, ds, need_sums, training);
    else backward_per_channel<false>(dy, x, y, w, mean, invstd, dx, dw, db, N, C, S, ds, need_sums, training);
    return;
  }
  const bool fold = fold_rows(S);
  const int64_t C_ = fold ? C * S : C, S_ = fold ? 1 : S;  // the layout the passes run on
  const std::vector<float> mean_rep = fold ? repeat_per_position(mean, C, S) : std::vector<float>();
  const float* mean_ = fold ? mean_rep.data() : mean;
  std::vector<double> sdy, sdyx;
  if (need_sums) {
    if (relu) channel_sums<true, true>(x, dy, y, mean_, ds, N, C_, S_, sdy, sdyx);
    else channel_sums<true, false>(x, dy, y, mean_, ds, N, C_, S_, sdy, sdyx);
    if (fold) {
      fold_sums(sdy, C, S);
      fold_sums(sdyx, C, S);
    }
  }
  std::vector<float> k(static_cast<size_t>(C)), kx(static_cast<size_t>(C)), k0(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const BnGrad f = bn_backward_coefficients(c, need_sums ? sdy[size_t(c)] : 0.0, need_sums ? sdyx[size_t(c)] : 0.0,
                                              double(N * S), need_sums, training, w, invstd, dw, db);
    k[size_t(c)] = f.k;
    kx[size_t(c)] = f.kx;
    k0[size_t(c)] = f.k0;
  }
  if (fold) {
    k = repeat_per_position(k.data(), C, S);
    kx = repeat_per_position(kx.data(), C, S);
    k0 = repeat_per_position(k0.data(), C, S);
  }
  if (relu) backward_apply<true>(dy, y, x, dx, k.data(), kx.data(), k0.data(), mean_, ds, N, C_, S_);
  else backward_apply<false>(dy, y, x, dx, k.data(), kx.data(), k0.data(), mean_, ds, N, C_, S_);
}

}  // namespace fusetrain
