"""Layer normalization kernels against float64 twins and torch.nn.functional."""
import numpy as np
import pytest

import fusetrain
from fusetrain import ops
from testutils import assert_close


def _both(fn):
    out_f = fn(np.float32)
    with fusetrain.backend.use_backend("numpy"):
        out_r = fn(np.float64)
    return out_f, out_r


@pytest.mark.parametrize("shape,nd", [((1, 1), 1), ((7, 5), 1), ((3, 4, 129), 1), ((2, 3, 5, 6), 2)])
def test_layernorm_matches_float64_and_torch(shape, nd):
    rng = np.random.default_rng(shape[-1])
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    ns = shape[len(shape) - nd:]
    w = rng.uniform(0.5, 1.5, ns).astype(np.float32)
    b = rng.standard_normal(ns).astype(np.float32)

    def run(dt):
        xx = x.astype(dt)
        y, mean, rstd = ops.layernorm_forward(xx, w.astype(dt), b.astype(dt), normalized_ndim=nd)
        gw, gb = np.zeros(ns, dt), np.zeros(ns, dt)
        dx = ops.layernorm_backward(dy.astype(dt), xx, w.astype(dt), mean, rstd, normalized_ndim=nd,
                                    grad_weight=gw, grad_bias=gb)
        return y, dx, gw, gb

    got, exp = _both(run)
    for name, a, e in zip(["y", "dx", "dw", "db"], got, exp):
        assert_close(a, e, rtol=1e-4, atol=1e-4, name=name)
    torch = pytest.importorskip("torch")
    tx = torch.tensor(x, requires_grad=True)
    tw, tb = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    ty = torch.nn.functional.layer_norm(tx, ns, tw, tb, eps=1e-5)
    ty.backward(torch.tensor(dy))
    for name, a, e in zip(["y", "dx", "dw", "db"], got, [ty.detach(), tx.grad, tw.grad, tb.grad]):
        assert_close(a, e.numpy(), rtol=1e-4, atol=1e-4, name="torch " + name)


def test_layernorm_backward_in_place_on_grad_out():
    """grad_input may be the grad_out array itself: parameter grads must not see the overwritten dy."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((40, 33)).astype(np.float32)
    dy = rng.standard_normal((40, 33)).astype(np.float32)
    w, b = rng.uniform(0.5, 1.5, 33).astype(np.float32), np.zeros(33, np.float32)
    y, mean, rstd = ops.layernorm_forward(x, w, b)
    expect = [np.zeros(33, np.float32), np.zeros(33, np.float32)]
    dx_expect = ops.layernorm_backward(dy, x, w, mean, rstd, grad_weight=expect[0], grad_bias=expect[1])
    gw, gb = np.zeros(33, np.float32), np.zeros(33, np.float32)
    buf = dy.copy()
    ops.layernorm_backward(buf, x, w, mean, rstd, grad_input=buf, grad_weight=gw, grad_bias=gb)
    assert np.array_equal(buf, dx_expect)
    assert np.array_equal(gw, expect[0]) and np.array_equal(gb, expect[1])
