// Softmax cross-entropy with integer labels, forward and backward in one pass over the logits.
// reference: torch.nn.functional.cross_entropy.
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

inline void check_softmax_cross_entropy_sizes(int64_t N, int64_t K) {
  check(N >= 0 && K >= 1,
        "softmax_cross_entropy needs N >= 0 and K >= 1, got N=" + std::to_string(N) + " K=" + std::to_string(K));
}

}  // namespace fusetrain
