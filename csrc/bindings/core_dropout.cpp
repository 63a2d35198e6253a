// Bindings for dropout, the fused bias-activation-dropout epilogue, the loss and the probes.
#include "bind_util.h"
#include "fusetrain/dropout.h"
#include "fusetrain/philox.h"
#include "fusetrain/loss.h"
#include "fusetrain/probe.h"

namespace fusetrain_py {

static fusetrain::Act to_act(int code) {
  if (code < 0 || code > 4) throw std::invalid_argument("act code must be in [0, 4]");
  return static_cast<fusetrain::Act>(code);
}

static void check_dropout(double p, uint64_t offset) {
  fusetrain::check(p >= 0.0 && p < 1.0, "p must be in [0, 1), got " + std::to_string(p));
  fusetrain::check(offset % 4 == 0, "offset must be a multiple of 4");
}

void bind_dropout(py::module_& m) {
  m.def("bias_act_dropout_forward", [](py::object x, py::object bias, py::object y, int64_t N, int64_t F,
                                       int act, double slope, double p, uint64_t seed, uint64_t offset,
                                       py::object bits) {
    fusetrain::check(N >= 0 && F >= 0, "N, F must be >= 0");
    check_dropout(p, offset);
    const float* xp = array_ptr<float>(x, "x", {N, F}, false);
    const float* bp = array_ptr<float>(bias, "bias", F, false, true);
    float* yp = array_ptr<float>(y, "out", {N, F}, true);
    uint8_t* kp = array_ptr<uint8_t>(bits, "mask_bits", (fusetrain::checked_numel({N, F}, "x") + 7) / 8, true, true);
    py::gil_scoped_release nogil;
    fusetrain::bias_act_dropout_forward(xp, bp, yp, N, F, to_act(act), static_cast<float>(slope), p, seed,
                                        offset, kp);
  });
  m.def("bias_act_dropout_backward", [](py::object dy, py::object y, py::object dx, py::object dbias,
                                        int64_t N, int64_t F, int act, double slope, double p, uint64_t seed,
                                        uint64_t offset, py::object bits) {
    fusetrain::check(N >= 0 && F >= 0, "N, F must be >= 0");
    check_dropout(p, offset);
    fusetrain::check(to_act(act) != fusetrain::Act::kLeakyRelu || slope >= 0,
                     "the leaky_relu backward reads the slope off the output's sign: negative_slope must be >= 0");
    const float* dyp = array_ptr<float>(dy, "grad_out", {N, F}, false);
    const float* yp = array_ptr<float>(y, "out", {N, F}, false);
    float* dxp = array_ptr<float>(dx, "grad_input", {N, F}, true);
    float* dbp = array_ptr<float>(dbias, "grad_bias", F, true, true);
    const uint8_t* kp =
        array_ptr<uint8_t>(bits, "mask_bits", (fusetrain::checked_numel({N, F}, "x") + 7) / 8, false, true);
    py::gil_scoped_release nogil;
    fusetrain::bias_act_dropout_backward(dyp, yp, dxp, dbp, N, F, to_act(act), static_cast<float>(slope), p,
                                         seed, offset, kp);
  });
  m.def("dropout_mask", [](py::object keep, double p, uint64_t seed, uint64_t offset) {
    check_dropout(p, offset);
    int64_t n = array_size(keep, "keep");
    uint8_t* kp = array_ptr<uint8_t>(keep, "keep", n, true);
    py::gil_scoped_release nogil;
    fusetrain::dropout_mask(kp, n, p, seed, offset);
  });
  m.def("philox4x32_10", [](uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
    auto r = fusetrain::philox4x32_10(c0, c1, c2, c3, k0, k1);
    return py::make_tuple(r.v[0], r.v[1], r.v[2], r.v[3]);
  }, "One Philox4x32-10 block, exposed for known-answer tests.");
}

void bind_loss(py::module_& m) {
  m.def("softmax_xent", [](py::object logits, py::object labels, py::object dlogits, int64_t N, int64_t K,
                           double scale) {
    fusetrain::check(N >= 0 && K >= 1, "N must be >= 0 and K >= 1");
    const float* lp = array_ptr<float>(logits, "logits", {N, K}, false);
    const int64_t* yp = array_ptr<int64_t>(labels, "labels", N, false);
    float* gp = array_ptr<float>(dlogits, "grad_input", {N, K}, true, true);
    for (int64_t i = 0; i < N; ++i)
      fusetrain::check(yp[i] >= 0 && yp[i] < K, "labels must be in [0, K)");
    py::gil_scoped_release nogil;
    return fusetrain::softmax_xent(lp, yp, gp, N, K, scale);
  });
}

void bind_probe(py::module_& m) {
  m.def("probe_copy", [](py::object src, py::object dst) {
    int64_t n = array_size(src, "src");
    const float* s = array_ptr<float>(src, "src", n, false);
    float* d = array_ptr<float>(dst, "dst", n, true);
    py::gil_scoped_release nogil;
    fusetrain::probe_copy(s, d, n);
  });
  m.def(
      "probe_fma",
      [](int64_t iters) {
        py::gil_scoped_release nogil;
        return fusetrain::probe_fma(iters);
      },
      py::arg("iters"), "Every pool thread runs `iters` rounds of register multiply-adds; returns the FLOPs done");
  m.def("probe_triad", [](py::object a, py::object b, py::object c, double s) {
    int64_t n = array_size(a, "a");
    float* ap = array_ptr<float>(a, "a", n, true);
    const float* bp = array_ptr<float>(b, "b", n, false);
    const float* cp = array_ptr<float>(c, "c", n, false);
    py::gil_scoped_release nogil;
    fusetrain::probe_triad(ap, bp, cp, static_cast<float>(s), n);
  });
  m.def("probe_update", [](py::list outs, py::object in) {
    int64_t n = array_size(in, "in");
    const float* ip = array_ptr<float>(in, "in", n, false);
    float* ptrs[4];
    fusetrain::check(outs.size() >= 1 && outs.size() <= 4, "probe_update takes 1 to 4 outputs");
    for (size_t j = 0; j < outs.size(); ++j) ptrs[j] = array_ptr<float>(outs[j], "outs[j]", n, true);
    int nout = int(outs.size());
    py::gil_scoped_release nogil;
    fusetrain::probe_update(ptrs, nout, ip, n);
  });
}

}  // namespace fusetrain_py
