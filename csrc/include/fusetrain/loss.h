// Softmax cross-entropy, forward and backward in one pass over the logits.
#pragma once
#include <cstdint>

namespace fusetrain {

// logits: (N, K); labels: (N,) int64 in [0, K); dlogits: (N, K) or null.
// Returns the summed loss (double). dlogits = (softmax - onehot) * grad_scale (1/N for 'mean').
// Stable for any magnitude: subtracts the row max, accumulates the exp-sum in double.
double softmax_xent(const float* logits, const int64_t* labels, float* dlogits, int64_t N,
                    int64_t K, double grad_scale);

}  // namespace fusetrain
