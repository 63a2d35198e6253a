// Fused optimizer updates over one contiguous float32 segment (a param group of the arena), and
// the element math both devices run them with. Every update reads g * grad_scale, so a
// clip-by-global-norm coefficient costs no extra pass. Scalars arrive as double (computed on the
// host: bias corrections, lr schedules) and the element math runs in float, as PyTorch does for
// float32 tensors.
#pragma once
#include <cmath>
#include <cstdint>

#include "fusetrain/common.h"

namespace fusetrain {

// reference: torch.optim.SGD (single-tensor path)
//   d = g*s + wd*p;  buf = first ? d : momentum*buf + (1-dampening)*d
//   d = nesterov ? d + momentum*buf : buf;  p -= lr*d
// p, g, buf are (n,); buf may be null when momentum == 0.
void sgd_step(float* p, const float* g, float* buf, int64_t n, double lr, double momentum, double dampening,
              double weight_decay, bool nesterov, bool first_step, double grad_scale);
void sgd_step(float* p, const float* g, float* buf, int64_t n, double lr, double momentum, double dampening,
              double weight_decay, bool nesterov, bool first_step, double grad_scale, cudaStream_t stream);

// reference: torch.optim.Adagrad; clr = lr / (1 + (step-1)*lr_decay) is computed on the host.
//   d = g*s + wd*p;  sum += d*d;  p -= clr * d / (sqrt(sum) + eps)
void adagrad_step(float* p, const float* g, float* sum, int64_t n, double clr, double weight_decay, double eps,
                  double grad_scale);
void adagrad_step(float* p, const float* g, float* sum, int64_t n, double clr, double weight_decay, double eps,
                  double grad_scale, cudaStream_t stream);

// reference: torch.optim.RMSprop
//   d = g*s + wd*p;  sq = alpha*sq + (1-alpha)*d*d
//   centered: gavg = lerp(gavg, d, 1-alpha); avg = sqrt(sq - gavg^2) + eps  else sqrt(sq) + eps
//   momentum > 0: buf = momentum*buf + d/avg; p -= lr*buf   else p -= lr*d/avg
// gavg is null unless centered, buf null unless momentum > 0.
void rmsprop_step(float* p, const float* g, float* sq, float* gavg, float* buf, int64_t n, double lr, double alpha,
                  double eps, double weight_decay, double momentum, double grad_scale);
void rmsprop_step(float* p, const float* g, float* sq, float* gavg, float* buf, int64_t n, double lr, double alpha,
                  double eps, double weight_decay, double momentum, double grad_scale, cudaStream_t stream);

// reference: torch.optim.Adam / AdamW
//   d = g*s (+ wd*p unless decoupled);  decoupled: p *= 1 - lr*wd
//   m = lerp(m, d, 1-beta1);  v = beta2*v + (1-beta2)*d*d;  amsgrad: vmax = max(vmax, v), use vmax
//   p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)  with bc_i = 1 - beta_i^step
// vmax is null unless amsgrad.
void adam_step(float* p, const float* g, float* m, float* v, float* vmax, int64_t n, double lr, double beta1,
               double beta2, double eps, double weight_decay, bool decoupled, int64_t step, double grad_scale);
void adam_step(float* p, const float* g, float* m, float* v, float* vmax, int64_t n, double lr, double beta1,
               double beta2, double eps, double weight_decay, bool decoupled, int64_t step, double grad_scale,
               cudaStream_t stream);

// Weight averaging: avg = avg + (1-decay) * (p - avg)  (EMA; SWA uses decay = n/(n+1)).
void ema_update(float* avg, const float* p, int64_t n, double decay);
void ema_update(float* avg, const float* p, int64_t n, double decay, cudaStream_t stream);

// ---- element math (both devices) -------------------------------------------------------------
// Slot functors (common.h) over p, g, then the state in the order of the signatures above. Mode
// switches are template parameters, chosen once per call by the *_math helpers below, so the
// element loops carry no branches.

template <bool kMomentum, bool kNesterov, bool kFirst>
struct SgdMath {
  static constexpr unsigned kLoad = kMomentum ? 0b111u : 0b011u;
  static constexpr unsigned kStore = kMomentum ? 0b101u : 0b001u;
  float lr, mom, damp1, wd, s;
  FT_HOST_DEVICE void operator()(float& p, float& g, float& buf, float&, float&) const {
    float d = g * s + wd * p;
    if constexpr (kMomentum) {
      const float b = kFirst ? d : mom * buf + damp1 * d;
      buf = b;
      d = kNesterov ? d + mom * b : b;
    }
    p -= lr * d;
  }
};

struct AdagradMath {
  static constexpr unsigned kLoad = 0b111u, kStore = 0b101u;
  float clr, wd, eps, s;
  FT_HOST_DEVICE void operator()(float& p, float& g, float& sum, float&, float&) const {
    const float d = g * s + wd * p;
    const float q = sum + d * d;
    sum = q;
    p -= clr * d / (sqrtf(q) + eps);
  }
};

template <bool kCentered, bool kMomentum>
struct RmspropMath {
  static constexpr unsigned kLoad = 0b00111u | (kCentered ? 0b01000u : 0u) | (kMomentum ? 0b10000u : 0u);
  static constexpr unsigned kStore = kLoad & ~0b00010u;
  float lr, alpha, alpha1, eps, wd, mom, s;
  FT_HOST_DEVICE void operator()(float& p, float& g, float& sq, float& gavg, float& buf) const {
    const float d = g * s + wd * p;
    const float q = alpha * sq + alpha1 * d * d;
    sq = q;
    float avg;
    if constexpr (kCentered) {
      const float ga = gavg + alpha1 * (d - gavg);
      gavg = ga;
      avg = sqrtf(q - ga * ga) + eps;
    } else {
      avg = sqrtf(q) + eps;
    }
    if constexpr (kMomentum) {
      const float b = mom * buf + d / avg;
      buf = b;
      p -= lr * b;
    } else {
      p -= lr * d / avg;
    }
  }
};

// Adam's per-call scalars, computed on the host in double as torch computes them in Python floats.
struct AdamScalars {
  float step_size, bc2_sqrt, b1c, b2, b2c, eps, wd, decay, s;
};

inline AdamScalars adam_scalars(double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step,
                                double grad_scale) {
  const double bc1 = 1.0 - std::pow(beta1, double(step));
  const double bc2 = 1.0 - std::pow(beta2, double(step));
  return AdamScalars{float(lr / bc1),     float(std::sqrt(bc2)),
                     float(1.0 - beta1),  float(beta2),
                     float(1.0 - beta2),  float(eps),
                     float(weight_decay), float(1.0 - lr * weight_decay),
                     float(grad_scale)};
}

template <bool kAmsgrad, bool kDecoupled>
struct AdamMath {
  static constexpr unsigned kLoad = 0b01111u | (kAmsgrad ? 0b10000u : 0u);
  static constexpr unsigned kStore = kLoad & ~0b00010u;
  AdamScalars c;
  FT_HOST_DEVICE void operator()(float& p, float& g, float& m, float& v, float& vmax) const {
    float pi = p;
    float d = g * c.s;
    if constexpr (kDecoupled) {
      pi *= c.decay;
    } else {
      d += c.wd * pi;
    }
    const float mi = m + c.b1c * (d - m);
    float vi = c.b2 * v + c.b2c * d * d;
    m = mi;
    v = vi;
    if constexpr (kAmsgrad) {
      vi = vmax > vi ? vmax : vi;
      vmax = vi;
    }
    const float denom = sqrtf(vi) / c.bc2_sqrt + c.eps;
    p = pi - c.step_size * (mi / denom);
  }
};

struct EmaMath {
  static constexpr unsigned kLoad = 0b11u, kStore = 0b01u;
  float w;  // 1 - decay
  FT_HOST_DEVICE void operator()(float& avg, float& p, float&, float&, float&) const { avg += w * (p - avg); }
};

// run(math) with the functor of each call's modes, after the checks both devices make.

template <class Run>
void sgd_math(float* buf, int64_t n, double lr, double momentum, double dampening, double weight_decay, bool nesterov,
              bool first_step, double grad_scale, Run&& run) {
  check_size(n, "n");
  const float lr_f = float(lr), mom = float(momentum), damp1 = float(1.0 - dampening), wd = float(weight_decay),
              s = float(grad_scale);
  if (momentum == 0.0) return run(SgdMath<false, false, false>{lr_f, mom, damp1, wd, s});
  check(buf != nullptr || n == 0, "momentum_buffer is required when momentum > 0");
  if (first_step) {
    if (nesterov) return run(SgdMath<true, true, true>{lr_f, mom, damp1, wd, s});
    return run(SgdMath<true, false, true>{lr_f, mom, damp1, wd, s});
  }
  if (nesterov) return run(SgdMath<true, true, false>{lr_f, mom, damp1, wd, s});
  return run(SgdMath<true, false, false>{lr_f, mom, damp1, wd, s});
}

template <class Run>
void adagrad_math(int64_t n, double clr, double weight_decay, double eps, double grad_scale, Run&& run) {
  check_size(n, "n");
  run(AdagradMath{float(clr), float(weight_decay), float(eps), float(grad_scale)});
}

template <class Run>
void rmsprop_math(const float* gavg, const float* buf, int64_t n, double lr, double alpha, double eps,
                  double weight_decay, double momentum, double grad_scale, Run&& run) {
  check_size(n, "n");
  const bool centered = gavg != nullptr, with_mom = momentum > 0.0;
  check(!with_mom || buf != nullptr || n == 0, "momentum_buffer is required when momentum > 0");
  const float a = float(alpha), a1 = float(1.0 - alpha), lr_f = float(lr), e = float(eps), wd = float(weight_decay),
              mom = float(momentum), s = float(grad_scale);
  if (centered) {
    if (with_mom) return run(RmspropMath<true, true>{lr_f, a, a1, e, wd, mom, s});
    return run(RmspropMath<true, false>{lr_f, a, a1, e, wd, mom, s});
  }
  if (with_mom) return run(RmspropMath<false, true>{lr_f, a, a1, e, wd, mom, s});
  return run(RmspropMath<false, false>{lr_f, a, a1, e, wd, mom, s});
}

template <class Run>
void adam_math(const float* vmax, int64_t n, double lr, double beta1, double beta2, double eps, double weight_decay,
               bool decoupled, int64_t step, double grad_scale, Run&& run) {
  check_size(n, "n");
  check(step >= 1, "step must be >= 1, got " + std::to_string(step));
  const AdamScalars c = adam_scalars(lr, beta1, beta2, eps, weight_decay, step, grad_scale);
  if (vmax != nullptr) {
    if (decoupled) return run(AdamMath<true, true>{c});
    return run(AdamMath<true, false>{c});
  }
  if (decoupled) return run(AdamMath<false, true>{c});
  return run(AdamMath<false, false>{c});
}

template <class Run>
void ema_math(int64_t n, double decay, Run&& run) {
  check_size(n, "n");
  run(EmaMath{float(1.0 - decay)});
}

}  // namespace fusetrain
