// Softmax cross-entropy (CPU): per row, max, exp-sum (double), loss and gradient in one sweep.
// reference: torch.nn.functional.cross_entropy with integer targets.
#include "fusetrain/loss.h"

#include <cmath>
#include <string>
#include <vector>

#include "fusetrain/common.h"
#include "fusetrain/parallel.h"

namespace fusetrain {

double softmax_cross_entropy(const float* logits, const int64_t* labels, float* dlogits, int64_t N, int64_t K,
                             double grad_scale) {
  check_softmax_cross_entropy_sizes(N, K);
  for (int64_t r = 0; r < N; ++r)
    check(labels[r] >= 0 && labels[r] < K, "label " + std::to_string(labels[r]) + " of row " + std::to_string(r) +
                                               " is outside [0, " + std::to_string(K) + ")");
  // Per-row losses summed in row order afterwards: the same total for any thread count.
  std::vector<double> row_loss(static_cast<size_t>(N));
  parallel_chunks(N, N * K, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* z = logits + r * K;
      float mx = z[0];
      for (int64_t k = 1; k < K; ++k) mx = z[k] > mx ? z[k] : mx;
      double s = 0.0;
      for (int64_t k = 0; k < K; ++k) s += std::exp(double(z[k]) - double(mx));
      const int64_t y = labels[r];
      row_loss[size_t(r)] = std::log(s) - (double(z[y]) - double(mx));
      if (dlogits) {
        float* g = dlogits + r * K;
        const double inv = grad_scale / s;
        for (int64_t k = 0; k < K; ++k) g[k] = float(std::exp(double(z[k]) - double(mx)) * inv);
        g[y] = float(double(g[y]) - grad_scale);
      }
    }
  });
  double total = 0.0;
  for (const double v : row_loss) total += v;
  return total;
}

double mse_loss(const float* pred, const float* target, float* grad, int64_t n, float grad_scale) {
  check_size(n, "n");
  constexpr int64_t kBlock = 1 << 14;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> part(static_cast<size_t>(blocks));
  parallel_tasks(blocks, threads_for(n), [&](int64_t b, int) {
    const int64_t lo = b * kBlock, hi = lo + kBlock < n ? lo + kBlock : n;
    double s = 0.0;
    if (grad) {
      for (int64_t i = lo; i < hi; ++i) {
        const MseElement e(pred[i], target[i]);
        s += e.loss();
        grad[i] = e.grad(grad_scale);
      }
    } else {
      for (int64_t i = lo; i < hi; ++i) s += MseElement(pred[i], target[i]).loss();
    }
    part[size_t(b)] = s;
  });
  double total = 0.0;
  for (const double v : part) total += v;
  return total;
}

}  // namespace fusetrain
