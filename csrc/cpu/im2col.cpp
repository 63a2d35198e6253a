// The im2col route's helpers on the CPU (im2col / col2im, layout moves with a fused bias): the
// reference of the GPU's (csrc/cuda/conv.cu) in the tests; the CPU's own convolution is conv.cpp.
// Every kernel is parallel over independent outputs (column rows or whole planes), so no two
// threads write the same element and the summation order never depends on the thread count.
// reference: torch.nn.functional.unfold / fold.
#include <algorithm>
#include <cstring>
#include <vector>

#include "fusetrain/common.h"
#include "fusetrain/conv.h"
#include "fusetrain/parallel.h"

namespace fusetrain {

namespace {

// Smallest o >= 0 with o*S >= a (a may be negative).
inline int64_t ceil_div_pos(int64_t a, int64_t S) { return a <= 0 ? 0 : (a + S - 1) / S; }

// Output columns [lo, hi) whose input column o*S - a lies inside [0, W).
inline void valid_range(int64_t a, int64_t S, int64_t W, int64_t O, int64_t& lo, int64_t& hi) {
  lo = ceil_div_pos(a, S);
  hi = ceil_div_pos(W + a, S);
  if (lo > O) lo = O;
  if (hi > O) hi = O;
  if (hi < lo) hi = lo;
}

}  // namespace

void im2col2d(const float* x, float* col, int64_t N, int64_t C, const Window2d& g) {
  check_im2col_sizes(N, C, "im2col");
  const int64_t KK = g.KH * g.KW, HW = g.H * g.W, OHW = g.OH * g.OW, NS = N * OHW;
  const int64_t rows = C * KK;
  parallel_chunks(rows * N, rows * NS, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t r = j / (N > 0 ? N : 1), n = j % (N > 0 ? N : 1);
      const int64_t c = r / KK, kh = (r % KK) / g.KW, kw = r % g.KW;
      const float* src = x + (n * C + c) * HW;
      float* dst = col + r * NS + n * OHW;
      const int64_t a = g.PW - kw * g.DW;  // input column = ow*SW - a
      int64_t lo, hi;
      valid_range(a, g.SW, g.W, g.OW, lo, hi);
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        float* d = dst + oh * g.OW;
        const int64_t ih = oh * g.SH - g.PH + kh * g.DH;
        if (ih < 0 || ih >= g.H) {
          std::memset(d, 0, sizeof(float) * size_t(g.OW));
          continue;
        }
        const float* s = src + ih * g.W - a;
        for (int64_t ow = 0; ow < lo; ++ow) d[ow] = 0.0f;
        if (g.SW == 1) {
          if (hi > lo) std::memcpy(d + lo, s + lo, sizeof(float) * size_t(hi - lo));
        } else {
          for (int64_t ow = lo; ow < hi; ++ow) d[ow] = s[ow * g.SW];
        }
        for (int64_t ow = hi; ow < g.OW; ++ow) d[ow] = 0.0f;
      }
    }
  });
}

void col2im2d(const float* col, float* dx, int64_t N, int64_t C, const Window2d& g) {
  check_im2col_sizes(N, C, "col2im");
  const int64_t KK = g.KH * g.KW, HW = g.H * g.W, OHW = g.OH * g.OW, NS = N * OHW;
  parallel_chunks(N * C, N * C * KK * OHW, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t n = j / C, c = j % C;
      float* plane = dx + (n * C + c) * HW;
      std::memset(plane, 0, sizeof(float) * size_t(HW));
      for (int64_t kh = 0; kh < g.KH; ++kh) {
        for (int64_t kw = 0; kw < g.KW; ++kw) {
          const float* src = col + (c * KK + kh * g.KW + kw) * NS + n * OHW;
          const int64_t a = g.PW - kw * g.DW;
          int64_t lo, hi;
          valid_range(a, g.SW, g.W, g.OW, lo, hi);
          for (int64_t oh = 0; oh < g.OH; ++oh) {
            const int64_t ih = oh * g.SH - g.PH + kh * g.DH;
            if (ih < 0 || ih >= g.H) continue;
            float* d = plane + ih * g.W - a;
            const float* s = src + oh * g.OW;
            if (g.SW == 1) {
#pragma omp simd
              for (int64_t ow = lo; ow < hi; ++ow) d[ow] += s[ow];
            } else {
              for (int64_t ow = lo; ow < hi; ++ow) d[ow * g.SW] += s[ow];
            }
          }
        }
      }
    }
  });
}

void cn_to_nc(const float* src, const float* bias, float* dst, int64_t N, int64_t C, int64_t S) {
  check_layout_sizes(N, C, S, "cn_to_nc");
  parallel_chunks(N * C, N * C * S, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t n = j / C, c = j % C;
      const float* s = src + (c * N + n) * S;
      float* d = dst + (n * C + c) * S;
      if (bias) {
        const float b = bias[c];
#pragma omp simd
        for (int64_t i = 0; i < S; ++i) d[i] = s[i] + b;
      } else {
        std::memcpy(d, s, sizeof(float) * size_t(S));
      }
    }
  });
}

void nc_to_cn(const float* src, float* dst, float* dbias, int64_t N, int64_t C, int64_t S) {
  check_layout_sizes(N, C, S, "nc_to_cn");
  // Per-(c, n) partial sums, combined per channel in n order below: parallel and deterministic.
  std::vector<double> part(dbias ? size_t(C * N) : 0);
  parallel_chunks(C * N, N * C * S, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t c = j / N, n = j % N;
      const float* s = src + (n * C + c) * S;
      float* d = dst + (c * N + n) * S;
      std::memcpy(d, s, sizeof(float) * size_t(S));
      if (dbias) {
        double acc = 0.0;
#pragma omp simd reduction(+ : acc)
        for (int64_t i = 0; i < S; ++i) acc += double(s[i]);
        part[size_t(c * N + n)] = acc;
      }
    }
  });
  if (dbias) {
    for (int64_t c = 0; c < C; ++c) {
      double acc = 0.0;
      for (int64_t n = 0; n < N; ++n) acc += part[size_t(c * N + n)];
      dbias[c] += float(acc);
    }
  }
}

}  // namespace fusetrain
