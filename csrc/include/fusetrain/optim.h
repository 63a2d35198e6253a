// Fused optimizer updates over one contiguous float32 segment (a param group of the arena).
// Every update reads g * grad_scale, so a clip-by-global-norm coefficient costs no extra pass.
// Scalars arrive as double (computed on the host: bias corrections, lr schedules) and the
// element math runs in float, as PyTorch does for float32 tensors.
#pragma once
#include <cstdint>

namespace fusetrain {

// reference: torch.optim.SGD (single-tensor path)
//   d = g*s + wd*p;  buf = first ? d : momentum*buf + (1-dampening)*d
//   d = nesterov ? d + momentum*buf : buf;  p -= lr*d
// p, g, buf are (n,); buf may be null when momentum == 0.
void sgd_step(float* p, const float* g, float* buf, int64_t n, double lr, double momentum,
              double dampening, double weight_decay, bool nesterov, bool first_step,
              double grad_scale);

// reference: torch.optim.Adagrad; clr = lr / (1 + (step-1)*lr_decay) is computed on the host.
//   d = g*s + wd*p;  sum += d*d;  p -= clr * d / (sqrt(sum) + eps)
void adagrad_step(float* p, const float* g, float* sum, int64_t n, double clr, double weight_decay,
                  double eps, double grad_scale);

// reference: torch.optim.RMSprop
//   d = g*s + wd*p;  sq = alpha*sq + (1-alpha)*d*d
//   centered: gavg = lerp(gavg, d, 1-alpha); avg = sqrt(sq - gavg^2) + eps  else sqrt(sq) + eps
//   momentum > 0: buf = momentum*buf + d/avg; p -= lr*buf   else p -= lr*d/avg
// gavg may be null unless centered, buf null unless momentum > 0.
void rmsprop_step(float* p, const float* g, float* sq, float* gavg, float* buf, int64_t n,
                  double lr, double alpha, double eps, double weight_decay, double momentum,
                  double grad_scale);

// reference: torch.optim.Adam / AdamW
//   d = g*s (+ wd*p unless decoupled);  decoupled: p *= 1 - lr*wd
//   m = lerp(m, d, 1-beta1);  v = beta2*v + (1-beta2)*d*d;  amsgrad: vmax = max(vmax, v), use vmax
//   p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)  with bc_i = 1 - beta_i^step
// vmax may be null unless amsgrad.
void adam_step(float* p, const float* g, float* m, float* v, float* vmax, int64_t n, double lr,
               double beta1, double beta2, double eps, double weight_decay, bool decoupled,
               int64_t step, double grad_scale);

// Weight averaging: avg = avg + (1-decay) * (p - avg)  (EMA; SWA uses decay = n/(n+1)).
void ema_update(float* avg, const float* p, int64_t n, double decay);

}  // namespace fusetrain
