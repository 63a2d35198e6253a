// Bindings of dropout and the fused epilogue y = dropout(act(x + bias)) (fusetrain/dropout.h),
// and of one Philox block for the known-answer tests, for _core and _cuda.
#pragma once
#include "arrays.h"
#include "fusetrain/dropout.h"

namespace fusetrain_py {

// The packed keep-mask of an (N, F) call: one bit per element.
inline int64_t mask_bytes(int64_t N, int64_t F) { return (fusetrain::checked_mul(N, F, "x") + 7) / 8; }

// The checks of an epilogue call before any array is read; returns its activation.
inline fusetrain::Act epilogue_checks(int64_t N, int64_t F, int act, double p, uint64_t seed, uint64_t offset) {
  fusetrain::check_size(N, "N");
  fusetrain::check_size(F, "F");
  fusetrain::dropout_args(p, seed, offset);
  return fusetrain::act_from_code(act);
}

template <class Dev>
void bind_dropout(py::module_& m) {
  m.def(
      "bias_act_dropout_forward",
      [](py::object x, py::object bias, py::object out_, int64_t N, int64_t F, int act, double negative_slope, double p,
         uint64_t seed, uint64_t offset, py::object mask_bits) {
        const fusetrain::Act a = epilogue_checks(N, F, act, p, seed, offset);
        Dev d;
        d.run(FT_KERNEL(bias_act_dropout_forward),
              std::tuple{in(d, x, "x", {N, F}), in_opt(d, bias, "bias", F), out(d, out_, "out", {N, F}), N, F, a,
                         float(negative_slope), p, seed, offset,
                         out_opt<uint8_t>(d, mask_bits, "mask_bits", mask_bytes(N, F))});
      },
      py::arg("x"), py::arg("bias"), py::arg("out"), py::arg("N"), py::arg("F"), py::arg("act"),
      py::arg("negative_slope"), py::arg("p"), py::arg("seed"), py::arg("offset"), py::arg("mask_bits"),
      "out (N, F) = dropout(act(x + bias)); out may be x; mask_bits receives the packed keep-mask when given");
  m.def(
      "bias_act_dropout_backward",
      [](py::object grad_out, py::object out_, py::object grad_input, py::object grad_bias, int64_t N, int64_t F,
         int act, double negative_slope, double p, uint64_t seed, uint64_t offset, py::object mask_bits) {
        const fusetrain::Act a = epilogue_checks(N, F, act, p, seed, offset);
        // act' is read off the sign of the output, which a negative slope flips.
        fusetrain::check(a != fusetrain::Act::kLeakyRelu || negative_slope >= 0,
                         "the leaky_relu backward reads the slope off the output's sign: negative_slope must be >= 0");
        Dev d;
        d.run(FT_KERNEL(bias_act_dropout_backward),
              std::tuple{in(d, grad_out, "grad_out", {N, F}), in(d, out_, "out", {N, F}),
                         out(d, grad_input, "grad_input", {N, F}), out_opt(d, grad_bias, "grad_bias", F), N, F, a,
                         float(negative_slope), p, seed, offset,
                         in_opt<uint8_t>(d, mask_bits, "mask_bits", mask_bytes(N, F))});
      },
      py::arg("grad_out"), py::arg("out"), py::arg("grad_input"), py::arg("grad_bias"), py::arg("N"), py::arg("F"),
      py::arg("act"), py::arg("negative_slope"), py::arg("p"), py::arg("seed"), py::arg("offset"), py::arg("mask_bits"),
      "grad_input = grad_out through the dropout and act' (grad_input may be grad_out); grad_bias += its column sums");
  m.def(
      "dropout_mask",
      [](py::object keep, double p, uint64_t seed, uint64_t offset) {
        fusetrain::dropout_args(p, seed, offset);
        Dev d;
        const int64_t n = d.size(keep, "keep");
        d.run(FT_KERNEL(dropout_mask), std::tuple{out<uint8_t>(d, keep, "keep", n), n, p, seed, offset});
      },
      py::arg("keep"), py::arg("p"), py::arg("seed"), py::arg("offset"),
      "keep (uint8, 0/1) = the keep-mask dropout draws for (seed, offset), the same bits on either device");
  m.def(
      "philox4x32_10",
      [](uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
        uint32_t r[4];
        if constexpr (Dev::kCuda) {
          py::gil_scoped_release nogil;
          fusetrain::philox4x32_10(c0, c1, c2, c3, k0, k1, r, cudaStream_t{});
        } else {
          const fusetrain::Philox4 b = fusetrain::philox4x32_10(c0, c1, c2, c3, k0, k1);
          for (int j = 0; j < 4; ++j) r[j] = b.v[j];
        }
        return py::make_tuple(r[0], r[1], r[2], r[3]);
      },
      py::arg("c0"), py::arg("c1"), py::arg("c2"), py::arg("c3"), py::arg("k0"), py::arg("k1"),
      "One Philox4x32-10 block (counter c0..c3, key k0, k1), for known-answer tests");
}

}  // namespace fusetrain_py
