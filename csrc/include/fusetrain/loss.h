// Losses whose gradient comes out of the same pass as the loss: softmax cross-entropy with integer
// labels (reference: torch.nn.functional.cross_entropy) and the squared error (reference:
// torch.nn.functional.mse_loss).
#pragma once
#include <cstdint>

#include "fusetrain/common.h"

namespace fusetrain {

// logits: (N, K); labels: (N,) int64 in [0, K); dlogits: (N, K) or null.
// Returns the summed loss (double). dlogits = (softmax - onehot) * grad_scale (1/N for 'mean').
// Stable for any magnitude: subtracts the row max, accumulates the exp-sum in double; the row
// losses are summed in row order (the GPU's by a fixed two-stage reduction). The CPU refuses a
// label outside [0, K); the GPU, whose labels are device memory, gives that row a NaN loss.
double softmax_cross_entropy(const float* logits, const int64_t* labels, float* dlogits, int64_t N, int64_t K,
                             double grad_scale);
double softmax_cross_entropy(const float* logits, const int64_t* labels, float* dlogits, int64_t N, int64_t K,
                             double grad_scale, cudaStream_t stream);

// pred, target, grad: (n,); grad may be null. Returns sum((pred - target)^2) (double) and writes
// grad = (pred - target) * grad_scale (2/n for 'mean'). The sum is over fixed blocks added in
// order (the GPU's by the fixed two-stage reduction): the same bits for any thread count.
double mse_loss(const float* pred, const float* target, float* grad, int64_t n, float grad_scale);
double mse_loss(const float* pred, const float* target, float* grad, int64_t n, float grad_scale, cudaStream_t stream);

// One element of the squared error (both devices): its loss term and its scaled gradient. The
// difference is a float, as the NumPy twin's is, so the gradients agree bit for bit.
struct MseElement {
  float d;
  FT_HOST_DEVICE MseElement(float pred, float target) : d(pred - target) {}
  FT_HOST_DEVICE double loss() const { return double(d) * double(d); }
  FT_HOST_DEVICE float grad(float scale) const { return d * scale; }
};

inline void check_softmax_cross_entropy_sizes(int64_t N, int64_t K) {
  check(N >= 0 && K >= 1,
        "softmax_cross_entropy needs N >= 0 and K >= 1, got N=" + std::to_string(N) + " K=" + std::to_string(K));
}

}  // namespace fusetrain
