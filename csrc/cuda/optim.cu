// Fused optimizer updates and weight averaging on the GPU: one pass over p, g and the state.
// One element-wise driver (SlotUpdate over flat quads) serves every optimizer; each optimizer is
// a small functor holding only its math, with mode switches as template parameters.
// Semantics: csrc/include/fusetrain/optim.h (PyTorch's single-tensor update rules).
#include <cmath>

#include "common.cuh"
#include "fusetrain/cuda_ops.h"
#include "slots.cuh"

namespace fusetrain {
namespace gpu {
namespace {

// reference: torch.optim.SGD.  Slots: p, g, momentum buffer.
template <bool kMomentum, bool kNesterov, bool kFirst>
struct SgdMath {
  static constexpr unsigned kLoad = kMomentum ? 0b111u : 0b011u;
  static constexpr unsigned kStore = kMomentum ? 0b101u : 0b001u;
  float lr, mom, damp1, wd, s;
  __device__ __forceinline__ void operator()(float* v) const {
    float d = v[1] * s + wd * v[0];
    if constexpr (kMomentum) {
      const float b = kFirst ? d : mom * v[2] + damp1 * d;
      v[2] = b;
      d = kNesterov ? d + mom * b : b;
    }
    v[0] -= lr * d;
  }
};

// reference: torch.optim.Adagrad.  Slots: p, g, state_sum.
struct AdagradMath {
  static constexpr unsigned kLoad = 0b111u, kStore = 0b101u;
  float clr, wd, eps, s;
  __device__ __forceinline__ void operator()(float* v) const {
    const float d = v[1] * s + wd * v[0];
    const float q = v[2] + d * d;
    v[2] = q;
    v[0] -= clr * d / (sqrtf(q) + eps);
  }
};

// reference: torch.optim.RMSprop.  Slots: p, g, square_avg, grad_avg, momentum buffer.
template <bool kCentered, bool kMomentum>
struct RmspropMath {
  static constexpr unsigned kLoad = 0b00111u | (kCentered ? 0b01000u : 0u) | (kMomentum ? 0b10000u : 0u);
  static constexpr unsigned kStore = kLoad & ~0b00010u;
  float lr, alpha, alpha1, eps, wd, mom, s;
  __device__ __forceinline__ void operator()(float* v) const {
    const float d = v[1] * s + wd * v[0];
    const float q = alpha * v[2] + alpha1 * d * d;
    v[2] = q;
    float avg;
    if constexpr (kCentered) {
      const float ga = v[3] + alpha1 * (d - v[3]);
      v[3] = ga;
      avg = sqrtf(q - ga * ga) + eps;
    } else {
      avg = sqrtf(q) + eps;
    }
    if constexpr (kMomentum) {
      const float b = mom * v[4] + d / avg;
      v[4] = b;
      v[0] -= lr * b;
    } else {
      v[0] -= lr * d / avg;
    }
  }
};

// reference: torch.optim.Adam / AdamW.  Slots: p, g, exp_avg, exp_avg_sq, max_exp_avg_sq.
// Scalar math: d = g*s (+wd*p); m += (1-b1)(d-m); v = b2 v + (1-b2) d^2;
//              p -= step_size * (m / (sqrt(v)/sqrt(bc2) + eps))
template <bool kAmsgrad, bool kDecoupled>
struct AdamMath {
  static constexpr unsigned kLoad = 0b01111u | (kAmsgrad ? 0b10000u : 0u);
  static constexpr unsigned kStore = kLoad & ~0b00010u;
  float step_size, bc2_sqrt, b1c, b2, b2c, eps, wd, decay, s;
  __device__ __forceinline__ void operator()(float* v) const {
    float pi = v[0];
    float d = v[1] * s;
    if constexpr (kDecoupled) {
      pi *= decay;
    } else {
      d += wd * pi;
    }
    const float mi = v[2] + b1c * (d - v[2]);
    float vi = b2 * v[3] + b2c * d * d;
    v[2] = mi;
    v[3] = vi;
    if constexpr (kAmsgrad) {
      vi = v[4] > vi ? v[4] : vi;
      v[4] = vi;
    }
    const float denom = sqrtf(vi) / bc2_sqrt + eps;
    v[0] = pi - step_size * (mi / denom);
  }
};

// avg += (1-decay) * (p - avg).  Slots: avg, p.
struct EmaMath {
  static constexpr unsigned kLoad = 0b11u, kStore = 0b01u;
  float w;
  __device__ __forceinline__ void operator()(float* v) const { v[0] += w * (v[1] - v[0]); }
};

void check_common(const float* p, const float* g, int64_t n, const char* gname) {
  require(n >= 0, "n must be >= 0, got " + std::to_string(n));
  require_ptr(p, n, "param");
  require_ptr(g, n, gname);
}

}  // namespace

void sgd_step(float* p, const float* g, float* buf, int64_t n, double lr, double momentum,
              double dampening, double weight_decay, bool nesterov, bool first_step,
              double grad_scale, cudaStream_t stream) {
  check_common(p, g, n, "grad");
  const float lr_f = float(lr), mom = float(momentum), damp1 = float(1.0 - dampening),
              wd = float(weight_decay), s = float(grad_scale);
  Slots sl{{p, const_cast<float*>(g), buf, nullptr, nullptr}};
  if (momentum == 0.0) {
    return run_slots(SgdMath<false, false, false>{lr_f, mom, damp1, wd, s}, sl, n, stream, "sgd_step");
  }
  require(buf != nullptr || n == 0, "momentum_buffer is required when momentum > 0");
  if (first_step) {
    nesterov ? run_slots(SgdMath<true, true, true>{lr_f, mom, damp1, wd, s}, sl, n, stream, "sgd_step")
             : run_slots(SgdMath<true, false, true>{lr_f, mom, damp1, wd, s}, sl, n, stream, "sgd_step");
  } else {
    nesterov ? run_slots(SgdMath<true, true, false>{lr_f, mom, damp1, wd, s}, sl, n, stream, "sgd_step")
             : run_slots(SgdMath<true, false, false>{lr_f, mom, damp1, wd, s}, sl, n, stream, "sgd_step");
  }
}

void adagrad_step(float* p, const float* g, float* sum, int64_t n, double clr, double weight_decay,
                  double eps, double grad_scale, cudaStream_t stream) {
  check_common(p, g, n, "grad");
  require_ptr(sum, n, "state_sum");
  Slots sl{{p, const_cast<float*>(g), sum, nullptr, nullptr}};
  run_slots(AdagradMath{float(clr), float(weight_decay), float(eps), float(grad_scale)}, sl, n,
            stream, "adagrad_step");
}

void rmsprop_step(float* p, const float* g, float* sq, float* gavg, float* buf, int64_t n,
                  double lr, double alpha, double eps, double weight_decay, double momentum,
                  double grad_scale, cudaStream_t stream) {
  check_common(p, g, n, "grad");
  require_ptr(sq, n, "square_avg");
  const bool centered = gavg != nullptr, with_mom = momentum > 0.0;
  require(!with_mom || buf != nullptr || n == 0, "momentum_buffer is required when momentum > 0");
  const float a = float(alpha), a1 = float(1.0 - alpha), lr_f = float(lr), e = float(eps),
              wd = float(weight_decay), mom = float(momentum), s = float(grad_scale);
  Slots sl{{p, const_cast<float*>(g), sq, gavg, buf}};
  const char* name = "rmsprop_step";
  if (centered) {
    with_mom ? run_slots(RmspropMath<true, true>{lr_f, a, a1, e, wd, mom, s}, sl, n, stream, name)
             : run_slots(RmspropMath<true, false>{lr_f, a, a1, e, wd, mom, s}, sl, n, stream, name);
  } else {
    with_mom ? run_slots(RmspropMath<false, true>{lr_f, a, a1, e, wd, mom, s}, sl, n, stream, name)
             : run_slots(RmspropMath<false, false>{lr_f, a, a1, e, wd, mom, s}, sl, n, stream, name);
  }
}

void adam_step(float* p, const float* g, float* m, float* v, float* vmax, int64_t n, double lr,
               double beta1, double beta2, double eps, double weight_decay, bool decoupled,
               int64_t step, double grad_scale, cudaStream_t stream) {
  check_common(p, g, n, "grad");
  require_ptr(m, n, "exp_avg");
  require_ptr(v, n, "exp_avg_sq");
  require(step >= 1, "step must be >= 1, got " + std::to_string(step));
  // Host-side scalars in double, exactly as the CPU kernel computes them.
  const double bc1 = 1.0 - std::pow(beta1, double(step));
  const double bc2 = 1.0 - std::pow(beta2, double(step));
  const float step_size = float(lr / bc1), bc2_sqrt = float(std::sqrt(bc2));
  const float b1c = float(1.0 - beta1), b2 = float(beta2), b2c = float(1.0 - beta2);
  const float e = float(eps), wd = float(weight_decay), decay = float(1.0 - lr * weight_decay);
  const float s = float(grad_scale);
  Slots sl{{p, const_cast<float*>(g), m, v, vmax}};
  const char* name = "adam_step";
  if (vmax != nullptr) {
    decoupled ? run_slots(AdamMath<true, true>{step_size, bc2_sqrt, b1c, b2, b2c, e, wd, decay, s}, sl, n, stream, name)
              : run_slots(AdamMath<true, false>{step_size, bc2_sqrt, b1c, b2, b2c, e, wd, decay, s}, sl, n, stream, name);
  } else {
    decoupled ? run_slots(AdamMath<false, true>{step_size, bc2_sqrt, b1c, b2, b2c, e, wd, decay, s}, sl, n, stream, name)
              : run_slots(AdamMath<false, false>{step_size, bc2_sqrt, b1c, b2, b2c, e, wd, decay, s}, sl, n, stream, name);
  }
}

void ema_update(float* avg, const float* p, int64_t n, double decay, cudaStream_t stream) {
  require(n >= 0, "n must be >= 0, got " + std::to_string(n));
  require_ptr(avg, n, "avg");
  require_ptr(p, n, "param");
  Slots sl{{avg, const_cast<float*>(p), nullptr, nullptr, nullptr}};
  run_slots(EmaMath{float(1.0 - decay)}, sl, n, stream, "ema_update");
}

}  // namespace gpu
}  // namespace fusetrain
