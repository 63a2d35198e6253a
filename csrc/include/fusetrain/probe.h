// Probes of the machine's limits: what a trivial streaming loop reaches (memory bandwidth) and
// what back-to-back multiply-adds reach (compute).
#pragma once
#include <cstdint>

namespace fusetrain {

void probe_copy(const float* src, float* dst, int64_t n);                       // 8 B/elem
void probe_triad(float* a, const float* b, const float* c, float s, int64_t n);  // 12 B/elem

// outs[j][i] += in[i] for j < nout (1..4): the same streams as an optimizer update that reads
// nout state buffers plus the gradient and writes the state back ((8*nout + 4) B/elem).
void probe_update(float* const* outs, int nout, const float* in, int64_t n);

// The compute ceiling: every pool thread runs independent vector multiply-adds on registers (the
// widest ISA the kernels use) for `iters` rounds; returns the floating-point operations done (time
// the call to get FLOP/s).
double probe_fma(int64_t iters);

}  // namespace fusetrain
