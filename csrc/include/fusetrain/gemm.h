// Single-precision matrix product on the register tiles of the direct convolution (CPU, on
// fusetrain's thread pool). reference: torch.matmul / BLAS sgemm with alpha = 1, beta = 0 or 1.
#pragma once
#include <cstdint>

namespace fusetrain {

// C (M x N, row stride ldc) = A . B, or C += A . B when accumulate.
// A element (m, k) is a[m*sam + k*sak] and B element (k, n) is b[k*sbk + n*sbn]: any strides, so
// a transposed operand (e.g. W^T, G^T) needs no copy by the caller: A is packed into row panels and
// B into column panels (each thread its own), whatever their strides. Every C element is one
// sequential sum over k in k order: the result does not depend on the thread count. C must not
// overlap A or B.
void gemm(int64_t M, int64_t N, int64_t K, const float* a, int64_t sam, int64_t sak,
          const float* b, int64_t sbk, int64_t sbn, float* c, int64_t ldc, bool accumulate);

}  // namespace fusetrain
