// Fused optimizer updates (CPU): one pass over p, g and the state, vectorized by the compiler.
// Mode switches (weight decay kind, amsgrad, nesterov, centered) are template parameters
// chosen once per call, so the inner loops carry no branches. Each *_run function updates one
// contiguous chunk; the pool (parallel.h) hands chunks to threads. The chunk functions take their
// pointers as restrict-qualified arguments: read through a lambda's captures the compiler could
// not prove the arrays distinct and left the loops scalar.
#include "fusetrain/optim.h"

#include <cmath>

#include "fusetrain/common.h"
#include "fusetrain/parallel.h"

namespace fusetrain {
namespace {

template <bool kMomentum, bool kNesterov, bool kFirst>
void sgd_run(float* __restrict p, const float* __restrict g, float* __restrict buf, int64_t n, float lr, float mom,
             float damp1, float wd, float s) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    float d = g[i] * s + wd * p[i];
    if constexpr (kMomentum) {
      float b = kFirst ? d : mom * buf[i] + damp1 * d;
      buf[i] = b;
      d = kNesterov ? d + mom * b : b;
    }
    p[i] -= lr * d;
  }
}

template <bool kMomentum, bool kNesterov, bool kFirst>
void sgd_impl(float* p, const float* g, float* buf, int64_t n, float lr, float mom, float damp1, float wd, float s) {
  parallel_for(n, [=](int64_t lo, int64_t hi) {
    sgd_run<kMomentum, kNesterov, kFirst>(p + lo, g + lo, buf ? buf + lo : nullptr, hi - lo, lr, mom, damp1, wd, s);
  });
}

template <bool kAmsgrad, bool kDecoupled>
void adam_run(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v,
              float* __restrict vmax, int64_t n, float b1c, float b2, float b2c, float eps, float wd, float decay,
              float step_size, float bc2_sqrt, float s) {
  // Scalar math: d = g*s (+wd*p); m += (1-b1)(d-m); v = b2 v + (1-b2) d^2;
  //              p -= step_size * (m / (sqrt(v)/sqrt(bc2) + eps))
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    float pi = p[i];
    float d = g[i] * s;
    if constexpr (kDecoupled) {
      pi *= decay;
    } else {
      d += wd * pi;
    }
    float mi = m[i] + b1c * (d - m[i]);
    float vi = b2 * v[i] + b2c * d * d;
    m[i] = mi;
    v[i] = vi;
    if constexpr (kAmsgrad) {
      vi = vmax[i] > vi ? vmax[i] : vi;
      vmax[i] = vi;
    }
    float denom = std::sqrt(vi) / bc2_sqrt + eps;
    p[i] = pi - step_size * (mi / denom);
  }
}

template <bool kAmsgrad, bool kDecoupled>
void adam_impl(float* p, const float* g, float* m, float* v, float* vmax, int64_t n, float b1c, float b2, float b2c,
               float eps, float wd, float decay, float step_size, float bc2_sqrt, float s) {
  parallel_for(n, [=](int64_t lo, int64_t hi) {
    adam_run<kAmsgrad, kDecoupled>(p + lo, g + lo, m + lo, v + lo, vmax ? vmax + lo : nullptr, hi - lo, b1c, b2, b2c,
                                   eps, wd, decay, step_size, bc2_sqrt, s);
  });
}

template <bool kCentered, bool kMomentum>
void rmsprop_run(float* __restrict p, const float* __restrict g, float* __restrict sq, float* __restrict gavg,
                 float* __restrict buf, int64_t n, float lr, float alpha, float alpha1, float eps, float wd, float mom,
                 float s) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    float d = g[i] * s + wd * p[i];
    float q = alpha * sq[i] + alpha1 * d * d;
    sq[i] = q;
    float avg;
    if constexpr (kCentered) {
      float ga = gavg[i] + alpha1 * (d - gavg[i]);
      gavg[i] = ga;
      avg = std::sqrt(q - ga * ga) + eps;
    } else {
      avg = std::sqrt(q) + eps;
    }
    if constexpr (kMomentum) {
      float b = mom * buf[i] + d / avg;
      buf[i] = b;
      p[i] -= lr * b;
    } else {
      p[i] -= lr * d / avg;
    }
  }
}

template <bool kCentered, bool kMomentum>
void rmsprop_impl(float* p, const float* g, float* sq, float* gavg, float* buf, int64_t n, float lr, float alpha,
                  float alpha1, float eps, float wd, float mom, float s) {
  parallel_for(n, [=](int64_t lo, int64_t hi) {
    rmsprop_run<kCentered, kMomentum>(p + lo, g + lo, sq + lo, gavg ? gavg + lo : nullptr, buf ? buf + lo : nullptr,
                                      hi - lo, lr, alpha, alpha1, eps, wd, mom, s);
  });
}

void adagrad_run(float* __restrict p, const float* __restrict g, float* __restrict sum, int64_t n, float c, float wd,
                 float e, float s) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    float d = g[i] * s + wd * p[i];
    float q = sum[i] + d * d;
    sum[i] = q;
    p[i] -= c * d / (std::sqrt(q) + e);
  }
}

void ema_run(float* __restrict avg, const float* __restrict p, int64_t n, float w) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) avg[i] += w * (p[i] - avg[i]);
}

}  // namespace

void sgd_step(float* p, const float* g, float* buf, int64_t n, double lr, double momentum,
              double dampening, double weight_decay, bool nesterov, bool first_step,
              double grad_scale) {
  check_size(n, "n");
  const float lr_f = float(lr), mom = float(momentum), damp1 = float(1.0 - dampening),
              wd = float(weight_decay), s = float(grad_scale);
  if (momentum == 0.0) {
    sgd_impl<false, false, false>(p, g, buf, n, lr_f, mom, damp1, wd, s);
  } else {
    check(buf != nullptr, "momentum_buffer is required when momentum > 0");
    if (first_step) {
      nesterov ? sgd_impl<true, true, true>(p, g, buf, n, lr_f, mom, damp1, wd, s)
               : sgd_impl<true, false, true>(p, g, buf, n, lr_f, mom, damp1, wd, s);
    } else {
      nesterov ? sgd_impl<true, true, false>(p, g, buf, n, lr_f, mom, damp1, wd, s)
               : sgd_impl<true, false, false>(p, g, buf, n, lr_f, mom, damp1, wd, s);
    }
  }
}

void adagrad_step(float* p, const float* g, float* sum, int64_t n, double clr, double weight_decay, double eps,
                  double grad_scale) {
  check_size(n, "n");
  const float c = float(clr), wd = float(weight_decay), e = float(eps), s = float(grad_scale);
  parallel_for(n, [=](int64_t lo, int64_t hi) { adagrad_run(p + lo, g + lo, sum + lo, hi - lo, c, wd, e, s); });
}

void rmsprop_step(float* p, const float* g, float* sq, float* gavg, float* buf, int64_t n,
                  double lr, double alpha, double eps, double weight_decay, double momentum,
                  double grad_scale) {
  check_size(n, "n");
  const float a = float(alpha), a1 = float(1.0 - alpha), lr_f = float(lr), e = float(eps),
              wd = float(weight_decay), mom = float(momentum), s = float(grad_scale);
  const bool centered = gavg != nullptr, with_mom = momentum > 0.0;
  check(!with_mom || buf != nullptr, "momentum_buffer is required when momentum > 0");
  if (centered) {
    with_mom ? rmsprop_impl<true, true>(p, g, sq, gavg, buf, n, lr_f, a, a1, e, wd, mom, s)
             : rmsprop_impl<true, false>(p, g, sq, gavg, buf, n, lr_f, a, a1, e, wd, mom, s);
  } else {
    with_mom ? rmsprop_impl<false, true>(p, g, sq, gavg, buf, n, lr_f, a, a1, e, wd, mom, s)
             : rmsprop_impl<false, false>(p, g, sq, gavg, buf, n, lr_f, a, a1, e, wd, mom, s);
  }
}

void adam_step(float* p, const float* g, float* m, float* v, float* vmax, int64_t n, double lr,
               double beta1, double beta2, double eps, double weight_decay, bool decoupled,
               int64_t step, double grad_scale) {
  check_size(n, "n");
  check(step >= 1, "step must be >= 1");
  // Host-side scalars in double, as torch computes them in Python floats.
  const double bc1 = 1.0 - std::pow(beta1, double(step));
  const double bc2 = 1.0 - std::pow(beta2, double(step));
  const float step_size = float(lr / bc1);
  const float bc2_sqrt = float(std::sqrt(bc2));
  const float b1c = float(1.0 - beta1), b2 = float(beta2), b2c = float(1.0 - beta2);
  const float e = float(eps), wd = float(weight_decay), decay = float(1.0 - lr * weight_decay);
  const float s = float(grad_scale);
  if (vmax != nullptr) {
    decoupled ? adam_impl<true, true>(p, g, m, v, vmax, n, b1c, b2, b2c, e, wd, decay, step_size, bc2_sqrt, s)
              : adam_impl<true, false>(p, g, m, v, vmax, n, b1c, b2, b2c, e, wd, decay, step_size, bc2_sqrt, s);
  } else {
    decoupled ? adam_impl<false, true>(p, g, m, v, vmax, n, b1c, b2, b2c, e, wd, decay, step_size, bc2_sqrt, s)
              : adam_impl<false, false>(p, g, m, v, vmax, n, b1c, b2, b2c, e, wd, decay, step_size, bc2_sqrt, s);
  }
}

void ema_update(float* avg, const float* p, int64_t n, double decay) {
  check_size(n, "n");
  const float w = float(1.0 - decay);
  parallel_for(n, [=](int64_t lo, int64_t hi) { ema_run(avg + lo, p + lo, hi - lo, w); });
}

}  // namespace fusetrain
