// Fused optimizer updates and weight averaging (CPU): the functors of fusetrain/optim.h run over
// the parameter segment and its state by the slot driver (slots.h), one pass, vectorized.
#include "fusetrain/optim.h"

#include "slots.h"

namespace fusetrain {

void sgd_step(float* p, const float* g, float* buf, int64_t n, double lr, double momentum, double dampening,
              double weight_decay, bool nesterov, bool first_step, double grad_scale) {
  sgd_math(buf, n, lr, momentum, dampening, weight_decay, nesterov, first_step, grad_scale,
           [&](const auto& math) { run_slots(math, Slots{{p, const_cast<float*>(g), buf, nullptr, nullptr}}, n); });
}

void adagrad_step(float* p, const float* g, float* sum, int64_t n, double clr, double weight_decay, double eps,
                  double grad_scale) {
  adagrad_math(n, clr, weight_decay, eps, grad_scale,
               [&](const auto& math) { run_slots(math, Slots{{p, const_cast<float*>(g), sum, nullptr, nullptr}}, n); });
}

void rmsprop_step(float* p, const float* g, float* sq, float* gavg, float* buf, int64_t n, double lr, double alpha,
                  double eps, double weight_decay, double momentum, double grad_scale) {
  rmsprop_math(gavg, buf, n, lr, alpha, eps, weight_decay, momentum, grad_scale,
               [&](const auto& math) { run_slots(math, Slots{{p, const_cast<float*>(g), sq, gavg, buf}}, n); });
}

void adam_step(float* p, const float* g, float* m, float* v, float* vmax, int64_t n, double lr, double beta1,
               double beta2, double eps, double weight_decay, bool decoupled, int64_t step, double grad_scale) {
  adam_math(vmax, n, lr, beta1, beta2, eps, weight_decay, decoupled, step, grad_scale,
            [&](const auto& math) { run_slots(math, Slots{{p, const_cast<float*>(g), m, v, vmax}}, n); });
}

void ema_update(float* avg, const float* p, int64_t n, double decay) {
  ema_math(n, decay, [&](const auto& math) {
    run_slots(math, Slots{{avg, const_cast<float*>(p), nullptr, nullptr, nullptr}}, n);
  });
}

}  // namespace fusetrain
