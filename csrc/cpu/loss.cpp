// Softmax cross-entropy (CPU): per row, max, exp-sum (double), loss and gradient in one sweep.
// reference: torch.nn.functional.cross_entropy with integer targets.
#include "fusetrain/loss.h"

#include <cmath>

#include "fusetrain/common.h"

namespace fusetrain {

double softmax_xent(const float* logits, const int64_t* labels, float* dlogits, int64_t N,
                    int64_t K, double grad_scale) {
  check(N >= 0 && K >= 1, "softmax_xent needs N >= 0 and K >= 1");
  double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (N * K > kParallelGrain)
  for (int64_t r = 0; r < N; ++r) {
    const float* z = logits + r * K;
    float mx = z[0];
    for (int64_t k = 1; k < K; ++k) mx = z[k] > mx ? z[k] : mx;
    double s = 0.0;
    for (int64_t k = 0; k < K; ++k) s += std::exp(double(z[k]) - double(mx));
    const int64_t y = labels[r];
    total += std::log(s) - (double(z[y]) - double(mx));
    if (dlogits) {
      float* g = dlogits + r * K;
      const double inv = grad_scale / s;
      for (int64_t k = 0; k < K; ++k) g[k] = float(std::exp(double(z[k]) - double(mx)) * inv);
      g[y] = float(double(g[y]) - grad_scale);
    }
  }
  return total;
}

}  // namespace fusetrain
