// Convolution helpers and pooling kernels (CPU, OpenMP). Every kernel is parallel over
// independent outputs (column rows or whole planes), so no two threads write the same element
// and the summation order never depends on the thread count.
// reference: torch.nn.functional.conv2d, max_pool2d, avg_pool2d, adaptive_avg_pool2d.
#include "fusetrain/conv.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "fusetrain/common.h"
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
  check(N >= 0 && C >= 0, "im2col sizes must be >= 0");
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
  check(N >= 0 && C >= 0, "col2im sizes must be >= 0");
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
  check(N >= 0 && C >= 0 && S >= 0, "cn_to_nc sizes must be >= 0");
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
  check(N >= 0 && C >= 0 && S >= 0, "nc_to_cn sizes must be >= 0");
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

namespace {

// Max pooling of one plane when every window lies inside it (no padding): each output starts from
// its window's first element (what the general loop settles on first, even for -inf or NaN) and
// takes a later one when it is greater or the first NaN. With the window shape and the stride known
// at compile time (kKH > 0) the row loop unrolls into selects on interleaved vector loads; kKH == 0
// reads them from g. Whole planes per call: rows are often short (16 outputs), so nothing per row
// but the loop itself.
template <int kKH, int kKW, int kSW>
void maxpool_plane_inside(const float* xp, float* yp, int32_t* ip, const Window2d& g) {
  const int64_t KH = kKH ? kKH : g.KH, KW = kKW ? kKW : g.KW, SW = kSW ? kSW : g.SW;
  const int64_t W = g.W, DW = g.DW, DH = g.DH, OW = g.OW;
  for (int64_t oh = 0; oh < g.OH; ++oh) {
    const float* row0 = xp + oh * g.SH * W;
    const int32_t i0 = int32_t(oh * g.SH * W);
    float* yr = yp + oh * OW;
    int32_t* ir = ip + oh * OW;
#pragma omp simd simdlen(8)
    for (int64_t ow = 0; ow < OW; ++ow) {
      float best = row0[ow * SW];
      int32_t bi = i0 + int32_t(ow * SW);
      for (int64_t t = 1; t < KH * KW; ++t) {
        const int64_t off = (t / KW) * DH * W + (t % KW) * DW;
        const float v = row0[ow * SW + off];
        const bool take = v > best || (v != v && best == best);
        best = take ? v : best;
        bi = take ? i0 + int32_t(ow * SW + off) : bi;
      }
      yr[ow] = best;
      ir[ow] = bi;
    }
  }
}

using MaxPlaneFn = void (*)(const float*, float*, int32_t*, const Window2d&);

MaxPlaneFn maxpool_plane_kernel(const Window2d& g) {
  if (g.DW == 1 && g.DH == 1) {
    if (g.KH == 1 && g.KW == 2 && g.SW == 2) return maxpool_plane_inside<1, 2, 2>;  // MaxPool1d(2)
    if (g.KH == 2 && g.KW == 2 && g.SW == 2) return maxpool_plane_inside<2, 2, 2>;  // MaxPool2d(2)
  }
  return maxpool_plane_inside<0, 0, 0>;
}

}  // namespace

void maxpool2d_forward(const float* x, float* y, int32_t* idx, int64_t P, const Window2d& g) {
  check(P >= 0, "maxpool plane count must be >= 0");
  const int64_t HW = g.H * g.W, OHW = g.OH * g.OW;
  if (g.PH == 0 && g.PW == 0) {
    const MaxPlaneFn plane = maxpool_plane_kernel(g);
    parallel_chunks(P, P * OHW * g.KH * g.KW, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) plane(x + p * HW, y + p * OHW, idx + p * OHW, g);
    });
    return;
  }
  parallel_chunks(P, P * OHW * g.KH * g.KW, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const float* xp = x + p * HW;
      float* yp = y + p * OHW;
      int32_t* ip = idx + p * OHW;
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        const int64_t h0 = oh * g.SH - g.PH;
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const int64_t w0 = ow * g.SW - g.PW;
          float best = -std::numeric_limits<float>::infinity();
          int64_t bi = -1;
          for (int64_t kh = 0; kh < g.KH; ++kh) {
            const int64_t ih = h0 + kh * g.DH;
            if (ih < 0 || ih >= g.H) continue;
            for (int64_t kw = 0; kw < g.KW; ++kw) {
              const int64_t iw = w0 + kw * g.DW;
              if (iw < 0 || iw >= g.W) continue;
              const float v = xp[ih * g.W + iw];
              if (bi < 0) bi = ih * g.W + iw;  // a window of -inf still points inside the plane
              if (v > best || (std::isnan(v) && !std::isnan(best))) {
                best = v;
                bi = ih * g.W + iw;
              }
            }
          }
          yp[oh * g.OW + ow] = best;
          ip[oh * g.OW + ow] = int32_t(bi);  // -1: the window lies wholly in the padding
        }
      }
    }
  });
}

void maxpool2d_backward(const float* dy, const int32_t* idx, float* dx, int64_t P,
                        const Window2d& g) {
  check(P >= 0, "maxpool plane count must be >= 0");
  const int64_t HW = g.H * g.W, OHW = g.OH * g.OW;
  // The indices come from the caller: each must name a pixel of its plane, or be -1 (a window
  // that lies wholly in the padding, whose gradient goes nowhere). Checked before anything is
  // written, so a bad index changes nothing.
  std::atomic<int64_t> bad{-1};
  parallel_chunks(P * OHW, P * OHW, [&](int64_t lo, int64_t hi) {
    for (int64_t o = lo; o < hi; ++o)
      if (idx[o] < -1 || idx[o] >= HW) {
        int64_t expected = -1;
        bad.compare_exchange_strong(expected, o);
        return;
      }
  });
  if (bad.load() >= 0)
    throw std::invalid_argument("indices: entry " + std::to_string(bad.load()) + " is " +
                                std::to_string(idx[bad.load()]) + ", outside the input plane of " + std::to_string(HW) +
                                " pixels (expected -1 <= index < " + std::to_string(HW) + ")");
  parallel_chunks(P, P * (HW + OHW), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      float* dxp = dx + p * HW;
      const float* dyp = dy + p * OHW;
      const int32_t* ip = idx + p * OHW;
      std::memset(dxp, 0, sizeof(float) * size_t(HW));
      for (int64_t o = 0; o < OHW; ++o)
        if (ip[o] >= 0) dxp[ip[o]] += dyp[o];
    }
  });
}

namespace {

// Window [h0, h1) x [w0, w1) of output (oh, ow) clipped to the input, and its divisor.
struct AvgWin { int64_t h0, h1, w0, w1; float inv; };

inline AvgWin avg_window(const Window2d& g, int64_t oh, int64_t ow, bool count_include_pad) {
  int64_t h0 = oh * g.SH - g.PH, w0 = ow * g.SW - g.PW;
  int64_t h1 = std::min(h0 + g.KH, g.H + g.PH), w1 = std::min(w0 + g.KW, g.W + g.PW);
  const int64_t padded = (h1 - h0) * (w1 - w0);
  h0 = std::max<int64_t>(h0, 0);
  w0 = std::max<int64_t>(w0, 0);
  h1 = std::min(h1, g.H);
  w1 = std::min(w1, g.W);
  const int64_t real = std::max<int64_t>(h1 - h0, 0) * std::max<int64_t>(w1 - w0, 0);
  const int64_t div = count_include_pad ? padded : real;
  return {h0, h1, w0, w1, div > 0 ? float(1.0 / double(div)) : 0.0f};
}

}  // namespace

void avgpool2d_forward(const float* x, float* y, int64_t P, const Window2d& g,
                       bool count_include_pad) {
  check(P >= 0, "avgpool plane count must be >= 0");
  check(g.DH == 1 && g.DW == 1, "average pooling has no dilation");
  const int64_t HW = g.H * g.W, OHW = g.OH * g.OW;
  parallel_chunks(P, P * OHW * g.KH * g.KW, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const float* xp = x + p * HW;
      float* yp = y + p * OHW;
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const AvgWin a = avg_window(g, oh, ow, count_include_pad);
          double s = 0.0;
          for (int64_t ih = a.h0; ih < a.h1; ++ih)
            for (int64_t iw = a.w0; iw < a.w1; ++iw) s += double(xp[ih * g.W + iw]);
          yp[oh * g.OW + ow] = float(s) * a.inv;
        }
      }
    }
  });
}

void avgpool2d_backward(const float* dy, float* dx, int64_t P, const Window2d& g,
                        bool count_include_pad) {
  check(P >= 0, "avgpool plane count must be >= 0");
  check(g.DH == 1 && g.DW == 1, "average pooling has no dilation");
  const int64_t HW = g.H * g.W, OHW = g.OH * g.OW;
  parallel_chunks(P, P * OHW * g.KH * g.KW, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      float* dxp = dx + p * HW;
      const float* dyp = dy + p * OHW;
      std::memset(dxp, 0, sizeof(float) * size_t(HW));
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const AvgWin a = avg_window(g, oh, ow, count_include_pad);
          const float v = dyp[oh * g.OW + ow] * a.inv;
          for (int64_t ih = a.h0; ih < a.h1; ++ih)
            for (int64_t iw = a.w0; iw < a.w1; ++iw) dxp[ih * g.W + iw] += v;
        }
      }
    }
  });
}

namespace {
inline int64_t bin_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
inline int64_t bin_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

void check_adaptive(int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW) {
  check(P >= 0 && H >= 0 && W >= 0, "adaptive pooling sizes must be >= 0");
  check(OH >= 1 && OW >= 1, "adaptive pooling output size must be >= 1");
}
}  // namespace

void adaptive_avgpool2d_forward(const float* x, float* y, int64_t P, int64_t H, int64_t W,
                                int64_t OH, int64_t OW) {
  check_adaptive(P, H, W, OH, OW);
  const int64_t HW = H * W, OHW = OH * OW;
  parallel_chunks(P, P * (HW + OHW), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const float* xp = x + p * HW;
      float* yp = y + p * OHW;
      for (int64_t oh = 0; oh < OH; ++oh) {
        const int64_t h0 = bin_start(oh, H, OH), h1 = bin_end(oh, H, OH);
        for (int64_t ow = 0; ow < OW; ++ow) {
          const int64_t w0 = bin_start(ow, W, OW), w1 = bin_end(ow, W, OW);
          double s = 0.0;
          for (int64_t ih = h0; ih < h1; ++ih) {
            const float* row = xp + ih * W;
#pragma omp simd reduction(+ : s)
            for (int64_t iw = w0; iw < w1; ++iw) s += double(row[iw]);
          }
          const int64_t cnt = (h1 - h0) * (w1 - w0);
          yp[oh * OW + ow] = cnt > 0 ? float(s / double(cnt)) : 0.0f;
        }
      }
    }
  });
}

void adaptive_avgpool2d_backward(const float* dy, float* dx, int64_t P, int64_t H, int64_t W,
                                 int64_t OH, int64_t OW) {
  check_adaptive(P, H, W, OH, OW);
  const int64_t HW = H * W, OHW = OH * OW;
  parallel_chunks(P, P * (HW + OHW), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      float* dxp = dx + p * HW;
      const float* dyp = dy + p * OHW;
      std::memset(dxp, 0, sizeof(float) * size_t(HW));
      for (int64_t oh = 0; oh < OH; ++oh) {
        const int64_t h0 = bin_start(oh, H, OH), h1 = bin_end(oh, H, OH);
        for (int64_t ow = 0; ow < OW; ++ow) {
          const int64_t w0 = bin_start(ow, W, OW), w1 = bin_end(ow, W, OW);
          const int64_t cnt = (h1 - h0) * (w1 - w0);
          if (cnt == 0) continue;
          const float v = float(double(dyp[oh * OW + ow]) / double(cnt));
          for (int64_t ih = h0; ih < h1; ++ih) {
            float* row = dxp + ih * W;
#pragma omp simd
            for (int64_t iw = w0; iw < w1; ++iw) row[iw] += v;
          }
        }
      }
    }
  });
}

}  // namespace fusetrain
