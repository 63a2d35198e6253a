// Pooling kernels (CPU): max, average and adaptive average over P planes, each plane on one
// thread (no two threads write the same element; sums in a fixed order), with the window
// arithmetic of fusetrain/pooling.h, shared with the GPU.
#include "fusetrain/pooling.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <string>

#include "fusetrain/common.h"
#include "fusetrain/parallel.h"

namespace fusetrain {

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
        const bool take = max_pool_takes(v, best);
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

void max_pool2d_forward(const float* x, float* y, int32_t* idx, int64_t P, const Window2d& g) {
  check_pool_planes(P);
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
      for (int64_t oh = 0; oh < g.OH; ++oh)
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const MaxPick<int64_t> best = max_pool_window(xp, oh, ow, g);
          yp[oh * g.OW + ow] = best.value;
          ip[oh * g.OW + ow] = int32_t(best.index);
        }
    }
  });
}

void max_pool2d_backward(const float* dy, const int32_t* idx, float* dx, int64_t P, const Window2d& g) {
  check_pool_planes(P);
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

void avg_pool2d_forward(const float* x, float* y, int64_t P, const Window2d& g, bool count_include_pad) {
  check_avg_pool(P, g);
  const int64_t HW = g.H * g.W, OHW = g.OH * g.OW;
  parallel_chunks(P, P * OHW * g.KH * g.KW, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const float* xp = x + p * HW;
      float* yp = y + p * OHW;
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const AvgWindow<int64_t> a = avg_pool_window<int64_t>(oh, ow, g, count_include_pad);
          double s = 0.0;
          for (int64_t ih = a.h0; ih < a.h1; ++ih)
            for (int64_t iw = a.w0; iw < a.w1; ++iw) s += double(xp[ih * g.W + iw]);
          yp[oh * g.OW + ow] = float(s) * a.inv;
        }
      }
    }
  });
}

void avg_pool2d_backward(const float* dy, float* dx, int64_t P, const Window2d& g, bool count_include_pad) {
  check_avg_pool(P, g);
  const int64_t HW = g.H * g.W, OHW = g.OH * g.OW;
  parallel_chunks(P, P * OHW * g.KH * g.KW, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      float* dxp = dx + p * HW;
      const float* dyp = dy + p * OHW;
      std::memset(dxp, 0, sizeof(float) * size_t(HW));
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const AvgWindow<int64_t> a = avg_pool_window<int64_t>(oh, ow, g, count_include_pad);
          const float v = dyp[oh * g.OW + ow] * a.inv;
          for (int64_t ih = a.h0; ih < a.h1; ++ih)
            for (int64_t iw = a.w0; iw < a.w1; ++iw) dxp[ih * g.W + iw] += v;
        }
      }
    }
  });
}

void adaptive_avg_pool2d_forward(const float* x, float* y, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW) {
  check_adaptive_pool(P, H, W, OH, OW);
  const int64_t HW = H * W, OHW = OH * OW;
  parallel_chunks(P, P * (HW + OHW), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const float* xp = x + p * HW;
      float* yp = y + p * OHW;
      for (int64_t oh = 0; oh < OH; ++oh) {
        const int64_t h0 = adaptive_bin_start(oh, H, OH), h1 = adaptive_bin_end(oh, H, OH);
        for (int64_t ow = 0; ow < OW; ++ow) {
          const int64_t w0 = adaptive_bin_start(ow, W, OW), w1 = adaptive_bin_end(ow, W, OW);
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

void adaptive_avg_pool2d_backward(const float* dy, float* dx, int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW) {
  check_adaptive_pool(P, H, W, OH, OW);
  const int64_t HW = H * W, OHW = OH * OW;
  parallel_chunks(P, P * (HW + OHW), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      float* dxp = dx + p * HW;
      const float* dyp = dy + p * OHW;
      std::memset(dxp, 0, sizeof(float) * size_t(HW));
      for (int64_t oh = 0; oh < OH; ++oh) {
        const int64_t h0 = adaptive_bin_start(oh, H, OH), h1 = adaptive_bin_end(oh, H, OH);
        for (int64_t ow = 0; ow < OW; ++ow) {
          const int64_t w0 = adaptive_bin_start(ow, W, OW), w1 = adaptive_bin_end(ow, W, OW);
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
