"""Philox streams, dropout masks and the fused bias-activation-dropout epilogue."""
import numpy as np
import pytest

import fusetrain
from fusetrain import _core, ops
from fusetrain.ops import numpy_ref as ref
from testutils import assert_close, torch_or_skip

# Random123's published known-answer vectors for philox4x32-10.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,expect", KAT)
def test_philox_known_answers(ctr, key, expect):
    assert tuple(_core.philox4x32_10(*ctr, *key)) == expect
    got = ref.philox4x32_10(np.array([ctr], dtype=np.uint32), key)[0]
    assert tuple(int(v) for v in got) == expect


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 1023, 1024, 1025, 278011])
@pytest.mark.parametrize("offset", [0, 4, 1 << 33])
def test_mask_equals_reference_bitwise(n, offset):
    seed = 0x123456789ABCDEF
    got = ops.dropout_mask(n, 0.3, seed, offset)
    expect = ref.dropout_keep(n, 0.3, seed, offset)
    assert np.array_equal(got, expect)


def test_mask_independent_of_thread_count_and_slicing():
    before = _core.num_threads()
    try:
        masks = []
        for t in (1, 2, 3):
            _core.set_num_threads(t)
            masks.append(ops.dropout_mask(300007, 0.5, 7, 8))
        assert all(np.array_equal(masks[0], m) for m in masks[1:])
    finally:
        _core.set_num_threads(before)
    # A stream read in two parts equals the stream read at once (offset in elements).
    whole = ops.dropout_mask(4096, 0.5, 7, 0)
    assert np.array_equal(whole[1024:], ops.dropout_mask(3072, 0.5, 7, 1024))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_rate_and_scaling(p):
    n = 400000
    x = np.ones(n, np.float32)
    y = ops.dropout_forward(x, p, 3, 0)
    kept = y != 0
    rate = kept.mean()
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(rate - (1 - p)) < 5 * sigma
    assert_close(y[kept], np.full(kept.sum(), 1 / (1 - p)), rtol=1e-6, atol=0)
    # different seeds and offsets draw different masks
    assert not np.array_equal(kept, ops.dropout_forward(x, p, 4, 0) != 0)
    assert not np.array_equal(kept, ops.dropout_forward(x, p, 3, 400000) != 0)


def test_p_zero_is_identity():
    x = np.random.default_rng(0).standard_normal((33, 7)).astype(np.float32)
    assert np.array_equal(ops.dropout_forward(x, 0.0, 1, 0), x)
    assert np.array_equal(ops.dropout_backward(x, 0.0, 1, 0), x)


def test_backward_regenerated_equals_packed_bits():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(100003).astype(np.float32)
    dy = rng.standard_normal(100003).astype(np.float32)
    bits = np.zeros(ops.mask_bits_size(x.size), np.uint8)
    y = ops.dropout_forward(x, 0.35, 5, 16, mask_bits=bits)
    dx_regen = ops.dropout_backward(dy, 0.35, 5, 16)
    dx_bits = ops.dropout_backward(dy, 0.35, 5, 16, mask_bits=bits)
    assert np.array_equal(dx_regen, dx_bits)
    keep = ref.dropout_keep(x.size, 0.35, 5, 16)
    assert np.array_equal(np.unpackbits(bits, bitorder="little")[:x.size].astype(bool), keep)
    assert_close(dx_regen, np.where(keep, dy / 0.65, 0), rtol=1e-6, atol=0)
    assert np.array_equal(y != 0, keep & (x != 0))


@pytest.mark.parametrize("act", list(ops.ACTIVATIONS))
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (33, 129), (4, 5, 6)])
@pytest.mark.parametrize("p", [0.0, 0.3])
def test_epilogue_matches_float64(act, shape, p):
    rng = np.random.default_rng(len(shape) * 100 + shape[-1])
    x = rng.standard_normal(shape).astype(np.float32)
    bias = rng.standard_normal(shape[-1]).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)

    def run(dt):
        y = ops.bias_act_dropout_forward(x.astype(dt), bias.astype(dt), act=act, negative_slope=0.1, p=p,
                                         seed=21, offset=8)
        gb = np.full(shape[-1], 0.5, dt)
        dx = ops.bias_act_dropout_backward(dy.astype(dt), y, act=act, negative_slope=0.1, p=p, seed=21,
                                           offset=8, grad_bias=gb)
        return y, dx, gb

    got = run(np.float32)
    with fusetrain.backend.use_backend("numpy"):
        exp = run(np.float64)
    for name, a, e in zip(["y", "dx", "dbias"], got, exp):
        assert_close(a, e, rtol=1e-5, atol=1e-5, name=name)


@pytest.mark.parametrize("act,tfn", [("relu", "relu"), ("leaky_relu", "leaky_relu"), ("tanh", "tanh"),
                                     ("sigmoid", "sigmoid")])
def test_epilogue_matches_torch_without_dropout(act, tfn):
    torch = torch_or_skip()
    rng = np.random.default_rng(5)
    x = rng.standard_normal((17, 23)).astype(np.float32)
    bias = rng.standard_normal(23).astype(np.float32)
    dy = rng.standard_normal((17, 23)).astype(np.float32)
    y = ops.bias_act_dropout_forward(x, bias, act=act, negative_slope=0.01)
    gb = np.zeros(23, np.float32)
    dx = ops.bias_act_dropout_backward(dy, y, act=act, negative_slope=0.01, grad_bias=gb)
    tx, tb = torch.tensor(x, requires_grad=True), torch.tensor(bias, requires_grad=True)
    fn = getattr(torch.nn.functional, tfn) if tfn != "tanh" and tfn != "sigmoid" else getattr(torch, tfn)
    ty = fn(tx + tb)
    ty.backward(torch.tensor(dy))
    assert_close(y, ty.detach().numpy(), rtol=1e-6, atol=1e-6)
    assert_close(dx, tx.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert_close(gb, tb.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_relu_propagates_nan_like_torch():
    # torch.relu(nan) is nan and its gradient passes through (threshold_backward tests x <= 0);
    # a NaN must never be silently turned into 0 by any fused ReLU path.
    x = np.array([[-1.0, np.nan, 2.0, 0.0, -np.inf, np.inf]], np.float32)
    dy = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], np.float32)
    y = ops.bias_act_dropout_forward(x, None, act="relu")
    dx = ops.bias_act_dropout_backward(dy, y, act="relu")
    expect_y = np.array([[0.0, np.nan, 2.0, 0.0, 0.0, np.inf]], np.float32)
    expect_dx = np.array([[0.0, 2.0, 3.0, 0.0, 0.0, 6.0]], np.float32)
    np.testing.assert_array_equal(y, expect_y)
    np.testing.assert_array_equal(dx, expect_dx)
    with fusetrain.backend.use_backend("numpy"):
        np.testing.assert_array_equal(ops.bias_act_dropout_backward(dy, y, act="relu"), expect_dx)
    # batchnorm + ReLU: a NaN in one sample makes its channel NaN for the whole batch
    xb = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    xb[2, 1] = np.nan
    yb, mean, invstd = ops.batchnorm_forward(xb, None, None, None, None, training=True, relu=True)
    assert np.isnan(yb[:, 1]).all() and np.isfinite(yb[:, [0, 2]]).all()
    gx = ops.batchnorm_backward(np.ones_like(xb), xb, yb, None, mean, invstd, training=True, relu=True)
    assert np.isnan(gx[:, 1]).all() and np.isfinite(gx[:, [0, 2]]).all()
    try:
        import torch
    except ImportError:
        return
    tx = torch.tensor(x, requires_grad=True)
    torch.relu(tx).backward(torch.tensor(dy))
    np.testing.assert_array_equal(tx.grad.numpy(), expect_dx)


def test_inplace_forward_and_bad_inputs():
    x = np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8)
    expect = np.maximum(x + 1, 0)
    ops.bias_act_dropout_forward(x, np.ones(8, np.float32), act="relu", out=x)
    assert_close(x, expect, rtol=0, atol=0)
    with pytest.raises(ValueError, match="p must be < 1.0"):
        ops.dropout_forward(x, 1.0, 0, 0)
    with pytest.raises(ValueError, match="p must be >= 0.0"):
        ops.dropout_forward(x, -0.1, 0, 0)
    with pytest.raises(ValueError, match="offset must be a non-negative int and a multiple of 4"):
        ops.dropout_forward(x, 0.5, 0, 3)
    with pytest.raises(ValueError, match="act must be one of"):
        ops.bias_act_dropout_forward(x, None, act="gelu")
    with pytest.raises(ValueError, match=r"bias must have shape \(8,\)"):
        ops.bias_act_dropout_forward(x, np.ones(7, np.float32))
    with pytest.raises(ValueError, match="out is updated in place and must be C-contiguous"):
        ops.bias_act_dropout_forward(x, None, out=np.zeros((8, 16), np.float32)[:, ::2])
