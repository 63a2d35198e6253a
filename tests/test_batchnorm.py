"""Batch normalization kernels against float64 twins and torch.nn.functional."""
import numpy as np
import pytest

import fusetrain
from fusetrain import ops
from testutils import assert_close, torch_or_skip

SHAPES = [(2, 1), (7, 3), (64, 33), (5, 3, 1), (9, 4, 13), (3, 5, 7, 11), (2, 16, 4, 4),
          # large enough to run in parallel: per-channel passes (many channels), the whole-tensor
          # passes with per-thread partials ((N, C): rows split) and with channels split (few channels)
          (2000, 300), (16, 40, 100), (20011, 3), (3, 2, 9001)]


def _data(shape, seed=0, offset=2.0, scale=3.0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale + offset).astype(np.float32)
    C = shape[1]
    w = rng.uniform(0.5, 1.5, C).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    return x, w, b, dy


def _both(fn):
    out_f = fn(np.float32)
    with fusetrain.backend.use_backend("numpy"):
        out_r = fn(np.float64)
    return out_f, out_r


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("relu,p", [(False, 0.0), (True, 0.0), (True, 0.4)])
@pytest.mark.parametrize("affine", [True, False])
def test_train_forward_backward_match_float64(shape, relu, p, affine):
    x, w, b, dy = _data(shape, seed=len(shape))

    def run(dt):
        C = shape[1]
        rm, rv = np.full(C, 0.5, dt), np.full(C, 2.0, dt)
        ww, bb = (w.astype(dt), b.astype(dt)) if affine else (None, None)
        xx = x.astype(dt)
        y, mean, invstd = ops.batchnorm_forward(xx, ww, bb, rm, rv, training=True, momentum=0.2,
                                                relu=relu, dropout_p=p, seed=11, offset=40)
        gw, gb = np.ones(C, dt), np.ones(C, dt)
        dx = ops.batchnorm_backward(dy.astype(dt), xx, y, ww, mean, invstd, training=True, relu=relu,
                                    dropout_p=p, grad_weight=gw, grad_bias=gb)
        return y, mean, invstd, rm, rv, dx, gw, gb

    (got, exp) = _both(run)
    names = ["y", "mean", "invstd", "running_mean", "running_var", "dx", "grad_weight", "grad_bias"]
    for name, a, e in zip(names, got, exp):
        scale = max(1.0, float(np.max(np.abs(e)))) if e.size else 1.0
        assert_close(a, e, rtol=2e-5, atol=2e-5 * scale, name=name)


@pytest.mark.parametrize("shape", [(16, 40, 100), (3, 2, 9001)])
def test_same_bits_for_any_thread_count(shape):
    # (N, C, S > 1): each channel's sums are one thread's sequential sums, whichever path runs
    from fusetrain import _core

    x, w, b, dy = _data(shape, seed=5)
    C = shape[1]
    before = _core.num_threads()
    results = []
    try:
        for t in (1, 2, 3):
            _core.set_num_threads(t)
            rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
            y, mean, invstd = ops.batchnorm_forward(x, w, b, rm, rv, training=True, relu=True)
            gw, gb = np.zeros(C, np.float32), np.zeros(C, np.float32)
            dx = ops.batchnorm_backward(dy, x, y, w, mean, invstd, training=True, relu=True, grad_weight=gw,
                                        grad_bias=gb)
            results.append((y, mean, invstd, rm, rv, dx, gw, gb))
    finally:
        _core.set_num_threads(before)
    for other in results[1:]:
        for a, e in zip(other, results[0]):
            assert np.array_equal(a, e)


@pytest.mark.parametrize("shape", [(7, 3), (9, 4, 13), (3, 5, 7, 11)])
@pytest.mark.parametrize("relu", [False, True])
def test_eval_mode_matches_float64(shape, relu):
    x, w, b, dy = _data(shape, seed=3)
    C = shape[1]
    rng = np.random.default_rng(1)
    rm = rng.standard_normal(C).astype(np.float32)
    rv = rng.uniform(0.5, 2, C).astype(np.float32)

    def run(dt):
        xx = x.astype(dt)
        y, mean, invstd = ops.batchnorm_forward(xx, w.astype(dt), b.astype(dt), rm.astype(dt), rv.astype(dt),
                                                training=False, relu=relu)
        gw, gb = np.zeros(C, dt), np.zeros(C, dt)
        dx = ops.batchnorm_backward(dy.astype(dt), xx, y, w.astype(dt), mean, invstd, training=False,
                                    relu=relu, grad_weight=gw, grad_bias=gb)
        return y, dx, gw, gb

    got, exp = _both(run)
    for a, e in zip(got, exp):
        assert_close(a, e, rtol=2e-5, atol=1e-4)


@pytest.mark.parametrize("shape", [(64, 33), (9, 4, 13), (3, 5, 7, 11)])
def test_matches_torch_batch_norm(shape):
    torch = torch_or_skip()
    x, w, b, dy = _data(shape, seed=7)
    C = shape[1]
    rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
    y, mean, invstd = ops.batchnorm_forward(x, w, b, rm, rv, training=True, momentum=0.1, relu=True)
    gw, gb = np.zeros(C, np.float32), np.zeros(C, np.float32)
    dx = ops.batchnorm_backward(dy, x, y, w, mean, invstd, training=True, relu=True, grad_weight=gw, grad_bias=gb)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    trm, trv = torch.zeros(C), torch.ones(C)
    ty = torch.relu(torch.nn.functional.batch_norm(tx, trm, trv, tw, tb, training=True, momentum=0.1))
    ty.backward(torch.tensor(dy))
    assert_close(y, ty.detach().numpy(), rtol=1e-5, atol=2e-5, name="y")
    assert_close(rm, trm.numpy(), rtol=1e-5, atol=1e-6, name="running_mean")
    assert_close(rv, trv.numpy(), rtol=1e-5, atol=1e-6, name="running_var")
    assert_close(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-5, name="dx")
    assert_close(gw, tw.grad.numpy(), rtol=1e-4, atol=1e-4, name="dweight")
    assert_close(gb, tb.grad.numpy(), rtol=1e-4, atol=1e-4, name="dbias")


def test_fused_dropout_mask_is_the_dropout_stream():
    """BN+ReLU+dropout drops exactly the elements a standalone dropout with the same stream drops."""
    x, w, b, _ = _data((32, 17), seed=2)
    y_fused, _, _ = ops.batchnorm_forward(x, w, b, None, None, training=True, relu=True, dropout_p=0.3,
                                          seed=99, offset=12)
    y_plain, _, _ = ops.batchnorm_forward(x, w, b, None, None, training=True, relu=True)
    y_two = ops.dropout_forward(y_plain, 0.3, 99, 12)
    assert_close(y_fused, y_two, rtol=1e-6, atol=1e-6)


def test_batchnorm_bad_inputs():
    x = np.ones((1, 3), np.float32)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        ops.batchnorm_forward(x, None, None, None, None, training=True)
    x = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        ops.batchnorm_forward(x, np.ones(4, np.float32), np.ones(4, np.float32), None, None, training=True)
    with pytest.raises(ValueError, match="needs running_mean"):
        ops.batchnorm_forward(x, None, None, None, None, training=False)
    with pytest.raises(ValueError, match="dropout_p must be < 1.0"):
        ops.batchnorm_forward(x, None, None, None, None, training=True, relu=True, dropout_p=1.0)
    rm = np.zeros(6, np.float32)[::2]
    with pytest.raises(ValueError, match="running_mean is updated in place and must be C-contiguous"):
        ops.batchnorm_forward(x, None, None, rm, np.ones(3, np.float32), training=True)
