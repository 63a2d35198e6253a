// The fusetrain._cuda extension module: CUDA kernels on device pointers passed as Python ints
// (0 for None), with the CuPy stream handle as the last argument. Importing it touches no GPU:
// the CUDA runtime (linked statically) loads the driver on the first kernel call.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "fusetrain/cuda_ops.h"

namespace py = pybind11;
namespace gpu = fusetrain::gpu;

namespace {

template <class T>
T* dptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

cudaStream_t as_stream(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

using nogil = py::call_guard<py::gil_scoped_release>;

void bind_optim(py::module_& m) {
  m.def("sgd_step", [](uintptr_t p, uintptr_t g, uintptr_t buf, int64_t n, double lr, double momentum,
                       double dampening, double wd, bool nesterov, bool first, double scale, uintptr_t s) {
    gpu::sgd_step(dptr<float>(p), dptr<const float>(g), dptr<float>(buf), n, lr, momentum, dampening, wd,
                  nesterov, first, scale, as_stream(s));
  }, nogil());
  m.def("adagrad_step", [](uintptr_t p, uintptr_t g, uintptr_t sum, int64_t n, double clr, double wd,
                           double eps, double scale, uintptr_t s) {
    gpu::adagrad_step(dptr<float>(p), dptr<const float>(g), dptr<float>(sum), n, clr, wd, eps, scale,
                      as_stream(s));
  }, nogil());
  m.def("rmsprop_step", [](uintptr_t p, uintptr_t g, uintptr_t sq, uintptr_t gavg, uintptr_t buf, int64_t n,
                           double lr, double alpha, double eps, double wd, double momentum, double scale,
                           uintptr_t s) {
    gpu::rmsprop_step(dptr<float>(p), dptr<const float>(g), dptr<float>(sq), dptr<float>(gavg),
                      dptr<float>(buf), n, lr, alpha, eps, wd, momentum, scale, as_stream(s));
  }, nogil());
  m.def("adam_step", [](uintptr_t p, uintptr_t g, uintptr_t m1, uintptr_t v, uintptr_t vmax, int64_t n,
                        double lr, double b1, double b2, double eps, double wd, bool decoupled, int64_t step,
                        double scale, uintptr_t s) {
    gpu::adam_step(dptr<float>(p), dptr<const float>(g), dptr<float>(m1), dptr<float>(v), dptr<float>(vmax),
                   n, lr, b1, b2, eps, wd, decoupled, step, scale, as_stream(s));
  }, nogil());
  m.def("ema_update", [](uintptr_t avg, uintptr_t p, int64_t n, double decay, uintptr_t s) {
    gpu::ema_update(dptr<float>(avg), dptr<const float>(p), n, decay, as_stream(s));
  }, nogil());
}

void bind_norm(py::module_& m) {
  m.def("pow_sum", [](uintptr_t x, int64_t n, double p, uintptr_t s) {
    return gpu::pow_sum(dptr<const float>(x), n, p, as_stream(s));
  }, nogil(), "sum(|x|^p) (max|x| for p = inf), bitwise deterministic; waits for the result");
  m.def("scale_inplace", [](uintptr_t x, int64_t n, double f, uintptr_t s) {
    gpu::scale_inplace(dptr<float>(x), n, static_cast<float>(f), as_stream(s));
  }, nogil());
  m.def("clamp_inplace", [](uintptr_t x, int64_t n, double lo, double hi, uintptr_t s) {
    gpu::clamp_inplace(dptr<float>(x), n, static_cast<float>(lo), static_cast<float>(hi), as_stream(s));
  }, nogil());
  m.def("count_nonfinite", [](uintptr_t x, int64_t n, uintptr_t s) {
    return gpu::count_nonfinite(dptr<const float>(x), n, as_stream(s));
  }, nogil(), "number of NaN/Inf values; waits for the result");
}

void bind_batchnorm(py::module_& m) {
  m.def("batchnorm_forward_train", [](uintptr_t x, uintptr_t w, uintptr_t b, uintptr_t y, uintptr_t mean,
                                      uintptr_t invstd, uintptr_t rm, uintptr_t rv, int64_t N, int64_t C,
                                      int64_t S, double eps, double momentum, bool relu, double dropout_p,
                                      uint64_t seed, uint64_t offset, uintptr_t s) {
    gpu::batchnorm_forward_train(dptr<const float>(x), dptr<const float>(w), dptr<const float>(b),
                                 dptr<float>(y), dptr<float>(mean), dptr<float>(invstd), dptr<float>(rm),
                                 dptr<float>(rv), N, C, S, eps, momentum, relu, dropout_p, seed, offset,
                                 as_stream(s));
  }, nogil());
  m.def("batchnorm_forward_eval", [](uintptr_t x, uintptr_t w, uintptr_t b, uintptr_t rm, uintptr_t rv,
                                     uintptr_t y, uintptr_t invstd, int64_t N, int64_t C, int64_t S,
                                     double eps, bool relu, uintptr_t s) {
    gpu::batchnorm_forward_eval(dptr<const float>(x), dptr<const float>(w), dptr<const float>(b),
                                dptr<const float>(rm), dptr<const float>(rv), dptr<float>(y),
                                dptr<float>(invstd), N, C, S, eps, relu, as_stream(s));
  }, nogil());
  m.def("batchnorm_backward", [](uintptr_t dy, uintptr_t x, uintptr_t y, uintptr_t w, uintptr_t mean,
                                 uintptr_t invstd, uintptr_t dx, uintptr_t dw, uintptr_t db, int64_t N,
                                 int64_t C, int64_t S, bool relu, double dropout_scale, bool training,
                                 uintptr_t s) {
    gpu::batchnorm_backward(dptr<const float>(dy), dptr<const float>(x), dptr<const float>(y),
                            dptr<const float>(w), dptr<const float>(mean), dptr<const float>(invstd),
                            dptr<float>(dx), dptr<float>(dw), dptr<float>(db), N, C, S, relu, dropout_scale,
                            training, as_stream(s));
  }, nogil());
}

void bind_layernorm(py::module_& m) {
  m.def("layernorm_forward", [](uintptr_t x, uintptr_t w, uintptr_t b, uintptr_t y, uintptr_t mean,
                                uintptr_t rstd, int64_t N, int64_t D, double eps, uintptr_t s) {
    gpu::layernorm_forward(dptr<const float>(x), dptr<const float>(w), dptr<const float>(b), dptr<float>(y),
                           dptr<float>(mean), dptr<float>(rstd), N, D, eps, as_stream(s));
  }, nogil());
  m.def("layernorm_backward", [](uintptr_t dy, uintptr_t x, uintptr_t w, uintptr_t mean, uintptr_t rstd,
                                 uintptr_t dx, uintptr_t dw, uintptr_t db, int64_t N, int64_t D, uintptr_t s) {
    gpu::layernorm_backward(dptr<const float>(dy), dptr<const float>(x), dptr<const float>(w),
                            dptr<const float>(mean), dptr<const float>(rstd), dptr<float>(dx), dptr<float>(dw),
                            dptr<float>(db), N, D, as_stream(s));
  }, nogil());
}

void bind_dropout(py::module_& m) {
  m.def("bias_act_dropout_forward", [](uintptr_t x, uintptr_t bias, uintptr_t y, int64_t N, int64_t F,
                                       int act, double slope, double p, uint64_t seed, uint64_t offset,
                                       uintptr_t s) {
    gpu::bias_act_dropout_forward(dptr<const float>(x), dptr<const float>(bias), dptr<float>(y), N, F, act,
                                  static_cast<float>(slope), p, seed, offset, as_stream(s));
  }, nogil());
  m.def("bias_act_dropout_backward", [](uintptr_t dy, uintptr_t y, uintptr_t dx, uintptr_t dbias, int64_t N,
                                        int64_t F, int act, double slope, double p, uint64_t seed,
                                        uint64_t offset, uintptr_t s) {
    gpu::bias_act_dropout_backward(dptr<const float>(dy), dptr<const float>(y), dptr<float>(dx),
                                   dptr<float>(dbias), N, F, act, static_cast<float>(slope), p, seed, offset,
                                   as_stream(s));
  }, nogil());
  m.def("dropout_mask", [](uintptr_t keep, int64_t n, double p, uint64_t seed, uint64_t offset, uintptr_t s) {
    gpu::dropout_mask(dptr<uint8_t>(keep), n, p, seed, offset, as_stream(s));
  }, nogil(), "keep-mask bytes (0/1) for (seed, offset), identical to the CPU's");
  m.def("philox4x32_10", [](uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1,
                            uintptr_t s) {
    uint32_t out[4];
    {
      py::gil_scoped_release release;
      gpu::philox4x32_10(c0, c1, c2, c3, k0, k1, out, as_stream(s));
    }
    return py::make_tuple(out[0], out[1], out[2], out[3]);
  }, py::arg("c0"), py::arg("c1"), py::arg("c2"), py::arg("c3"), py::arg("k0"), py::arg("k1"),
     py::arg("stream") = 0, "One Philox4x32-10 block computed on the GPU, for known-answer tests.");
}

void bind_loss(py::module_& m) {
  m.def("softmax_xent", [](uintptr_t logits, uintptr_t labels, uintptr_t dlogits, int64_t N, int64_t K,
                           double scale, uintptr_t s) {
    return gpu::softmax_xent(dptr<const float>(logits), dptr<const int64_t>(labels), dptr<float>(dlogits), N, K,
                             scale, as_stream(s));
  }, nogil(), "summed loss; waits for the result");
}

fusetrain::Window2d window(int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PH,
                           int64_t PW, int64_t DH, int64_t DW) {
  fusetrain::Window2d g{H, W, KH, KW, SH, SW, PH, PW, DH, DW, 0, 0};
  gpu::window2d_init(g);
  return g;
}

// Same arguments as _core's (pointers in place of arrays), then the stream.
void bind_conv(py::module_& m) {
  m.def("im2col2d", [](uintptr_t x, uintptr_t col, int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH,
                       int64_t KW, int64_t SH, int64_t SW, int64_t PH, int64_t PW, int64_t DH, int64_t DW,
                       uintptr_t s) {
    gpu::im2col2d(dptr<const float>(x), dptr<float>(col), N, C, window(H, W, KH, KW, SH, SW, PH, PW, DH, DW),
                  as_stream(s));
  }, nogil());
  m.def("col2im2d", [](uintptr_t col, uintptr_t dx, int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH,
                       int64_t KW, int64_t SH, int64_t SW, int64_t PH, int64_t PW, int64_t DH, int64_t DW,
                       uintptr_t s) {
    gpu::col2im2d(dptr<const float>(col), dptr<float>(dx), N, C, window(H, W, KH, KW, SH, SW, PH, PW, DH, DW),
                  as_stream(s));
  }, nogil(), "overwrites dx; deterministic (a gather per pixel, no atomics)");
  m.def("cn_to_nc", [](uintptr_t src, uintptr_t bias, uintptr_t dst, int64_t N, int64_t C, int64_t S, uintptr_t s) {
    gpu::cn_to_nc(dptr<const float>(src), dptr<const float>(bias), dptr<float>(dst), N, C, S, as_stream(s));
  }, nogil());
  m.def("nc_to_cn", [](uintptr_t src, uintptr_t dst, uintptr_t dbias, int64_t N, int64_t C, int64_t S, uintptr_t s) {
    gpu::nc_to_cn(dptr<const float>(src), dptr<float>(dst), dptr<float>(dbias), N, C, S, as_stream(s));
  }, nogil(), "dbias (C,) += per-channel sums (deterministic) when not 0");
  m.def("maxpool2d_forward", [](uintptr_t x, uintptr_t y, uintptr_t idx, int64_t P, int64_t H, int64_t W,
                                int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PH, int64_t PW,
                                int64_t DH, int64_t DW, uintptr_t s) {
    gpu::maxpool2d_forward(dptr<const float>(x), dptr<float>(y), dptr<int32_t>(idx), P,
                           window(H, W, KH, KW, SH, SW, PH, PW, DH, DW), as_stream(s));
  }, nogil());
  m.def("maxpool2d_backward", [](uintptr_t dy, uintptr_t idx, uintptr_t dx, int64_t P, int64_t H, int64_t W,
                                 int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PH, int64_t PW,
                                 int64_t DH, int64_t DW, uintptr_t s) {
    gpu::maxpool2d_backward(dptr<const float>(dy), dptr<const int32_t>(idx), dptr<float>(dx), P,
                            window(H, W, KH, KW, SH, SW, PH, PW, DH, DW), as_stream(s));
  }, nogil(), "overwrites dx; deterministic (a gather per pixel, no atomics)");
  m.def("avgpool2d_forward", [](uintptr_t x, uintptr_t y, int64_t P, int64_t H, int64_t W, int64_t KH, int64_t KW,
                                int64_t SH, int64_t SW, int64_t PH, int64_t PW, bool count_include_pad,
                                uintptr_t s) {
    gpu::avgpool2d_forward(dptr<const float>(x), dptr<float>(y), P, window(H, W, KH, KW, SH, SW, PH, PW, 1, 1),
                           count_include_pad, as_stream(s));
  }, nogil());
  m.def("avgpool2d_backward", [](uintptr_t dy, uintptr_t dx, int64_t P, int64_t H, int64_t W, int64_t KH,
                                 int64_t KW, int64_t SH, int64_t SW, int64_t PH, int64_t PW,
                                 bool count_include_pad, uintptr_t s) {
    gpu::avgpool2d_backward(dptr<const float>(dy), dptr<float>(dx), P, window(H, W, KH, KW, SH, SW, PH, PW, 1, 1),
                            count_include_pad, as_stream(s));
  }, nogil());
  m.def("adaptive_avgpool2d_forward", [](uintptr_t x, uintptr_t y, int64_t P, int64_t H, int64_t W, int64_t OH,
                                         int64_t OW, uintptr_t s) {
    gpu::adaptive_avgpool2d_forward(dptr<const float>(x), dptr<float>(y), P, H, W, OH, OW, as_stream(s));
  }, nogil());
  m.def("adaptive_avgpool2d_backward", [](uintptr_t dy, uintptr_t dx, int64_t P, int64_t H, int64_t W, int64_t OH,
                                          int64_t OW, uintptr_t s) {
    gpu::adaptive_avgpool2d_backward(dptr<const float>(dy), dptr<float>(dx), P, H, W, OH, OW, as_stream(s));
  }, nogil());
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fusetrain fused CUDA kernels on device pointers (CuPy arrays via fusetrain.ops)";
  bind_optim(m);
  bind_norm(m);
  bind_batchnorm(m);
  bind_layernorm(m);
  bind_dropout(m);
  bind_loss(m);
  bind_conv(m);
}
