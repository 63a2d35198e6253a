// Register-tile micro-kernels shared by the direct convolution and the GEMM (internal header).
// One set per instruction set (AVX-512, AVX2+FMA, portable C++), compiled from tile_kernels.inc;
// tile_kernels() returns the set of cpu_isa() (cpu_isa.h).
#pragma once
#include <cstdint>

namespace fusetrain {

// c (mr rows, row stride ldc; nr columns) = (or +=, tile_acc) sum_k a[k][0..mr) x (nr floats at
// x + off[k]); a is K x mr, packed k-major.
using TileFn = void (*)(int64_t K, const float* a, const float* x, const int64_t* off, float* c,
                        int64_t ldc);
// out (dr x dc, row-major) = sum_{s < L} x[r][s] * dT[s*ldd + j]: dr rows against dc contiguous
// columns per position.
using OuterFn = void (*)(int64_t L, const float* const* x, const float* dT, int64_t ldd, float* out);
// dst[k*ldd + n] = src[n*lds + k] for k < K, n < cols: a transposed copy (e.g. columns of W^T,
// each contiguous along k in W, into k-major rows of a GEMM panel).
using TransposeFn = void (*)(const float* src, int64_t lds, int64_t K, int64_t cols, float* dst, int64_t ldd);
// out (tw floats) = sum_{k < ntaps} w[k] * (tw floats at x + off[k]): a depthwise convolution's run.
using TapsFn = void (*)(int64_t ntaps, const float* w, const float* x, const int64_t* off, float* out);

struct TileKernels {
  const char* isa;
  int64_t mr, nr;  // tile: output rows x columns
  int64_t dr, dc;  // outer: rows x columns
  TileFn tile, tile_acc;
  OuterFn outer;
  // A narrower outer product for few output channels (<= ndc): ndr rows x ndc columns, so a
  // weight gradient with 16 channels does not compute 32.
  int64_t ndr, ndc;
  OuterFn outer_narrow;
  // And narrower still for <= tdc channels (e.g. the 6 of LeNet's first convolution).
  int64_t tdr, tdc;
  OuterFn outer_tiny;
  int64_t tw;  // taps: floats per run
  TapsFn taps;
  TransposeFn transpose;
  // The FMA probe: iters rounds of fma_ops independent multiply-add instructions of `lanes` floats.
  float (*fma_probe)(int64_t iters);
  int64_t fma_ops, lanes;
};

const TileKernels& tile_kernels();

}  // namespace fusetrain
