"""Convolution: the fused op against its float64 NumPy twin, Conv1d/Conv2d against torch.nn
(forward, input and weight/bias gradients) and against central differences, errors, buffers."""
import math

import numpy as np
import pytest

from fusetrain import nn, ops
from fusetrain.backend import use_backend
from testutils import assert_close, torch_or_skip

# (N, C, H, W, OC, kernel, stride, padding, dilation, groups): odd sizes, primes, rectangles.
CONV2D_CASES = [
    (2, 3, 7, 9, 5, 3, 1, 1, 1, 1),
    (3, 4, 11, 6, 6, (3, 2), (2, 1), (1, 0), (2, 1), 2),
    (1, 1, 5, 5, 1, 1, 1, 0, 1, 1),
    (2, 6, 8, 8, 9, 3, 2, 2, 1, 3),
    (1, 5, 13, 1, 7, (5, 1), 3, (2, 0), 1, 1),
    (0, 3, 6, 6, 4, 3, 1, 1, 1, 1),
    (2, 2, 4, 4, 3, 4, 1, 0, 1, 1),
    # stride 1, one group: the direct kernels (dilation, padding below/at/above D*(K-1), odd OC and taps)
    (3, 4, 10, 13, 7, 3, 1, 0, 2, 1),
    (2, 5, 6, 11, 13, (5, 3), 1, (1, 2), 1, 1),
    (1, 2, 9, 9, 6, 3, 1, 2, 1, 1),
    (2, 2, 5, 5, 3, 3, 1, 3, 1, 1),
    (5, 32, 8, 8, 32, 3, 1, 1, 1, 1),
    (23, 3, 5, 6, 4, 3, 1, 1, 1, 1),  # small images convolved in groups of 3: a partial last group
    # strided, dilated, grouped and depthwise: stride-phase packs, the scatter input gradient
    (3, 16, 9, 11, 32, 3, 2, 1, 1, 1),  # ResNet-style stride-2 3x3 on odd sizes
    (4, 16, 8, 8, 32, 1, 2, 0, 1, 1),  # 1x1 stride-2 projection: one stride phase of four
    (2, 5, 12, 10, 7, 3, 2, 2, 2, 1),  # stride 2 with dilation 2 and padding 2
    (3, 6, 13, 9, 4, (3, 2), (3, 2), (1, 1), (1, 2), 2),  # rectangular stride 3x2, groups 2
    (2, 8, 9, 9, 8, 3, 1, 1, 1, 8),  # depthwise 3x3
    (5, 12, 10, 7, 12, 3, 2, 1, 1, 12),  # depthwise stride 2, odd width
    (1, 3, 7, 7, 6, 3, 1, 2, 2, 3),  # depthwise with multiplier 2, dilation 2, batch 1
    (2, 4, 6, 6, 4, 3, 1, 3, 1, 4),  # depthwise with padding above D*(K-1)
    (3, 17, 5, 5, 19, 1, 1, 0, 1, 1),  # 1x1 stride 1, channel counts off the vector width
    (2, 3, 6, 6, 4, 3, 1, 2, 1, 1),  # stride 1 but padding above D*(K-1): the scatter path
]
CONV1D_CASES = [  # (N, C, L, OC, k, stride, padding, dilation, groups)
    (3, 1, 40, 8, 5, 1, 2, 1, 1),
    (37, 2, 40, 5, 5, 1, 2, 1, 1),  # signals convolved 5 at a time: a partial last group of 2
    (2, 4, 17, 6, 3, 2, 1, 2, 2),
    (1, 3, 7, 5, 7, 1, 3, 1, 1),
    (4, 6, 23, 9, 4, 3, 0, 1, 3),
    (100, 1, 40, 32, 5, 2, 1, 1, 1),  # the MNIST-1D strided CNN's layers
    (100, 32, 19, 32, 3, 2, 1, 1, 1),
    (7, 10, 15, 10, 3, 2, 1, 2, 10),  # depthwise, strided and dilated
]


def _rand(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def _twin_conv(x, w, b, dy, **kw):
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    y, col = ops.numpy_ref.conv2d_forward(x64, w64, None if b is None else b.astype(np.float64), **kw)
    dx, dw, db = ops.numpy_ref.conv2d_backward(dy64, col, w64, x.shape, **kw)
    return y, dx, dw, db


@pytest.mark.parametrize("case", CONV2D_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_op_matches_float64_twin(case, bias):
    N, C, H, W, OC, k, s, p, d, g = case
    rng = np.random.default_rng(11)
    kh, kw = (k, k) if isinstance(k, int) else k
    x = _rand(rng, (N, C, H, W))
    w = _rand(rng, (OC, C // g, kh, kw))
    b = _rand(rng, (OC,)) if bias else None
    y, col = ops.conv2d_forward(x, w, b, stride=s, padding=p, dilation=d, groups=g)
    dy = _rand(rng, y.shape)
    gw = np.full_like(w, 0.5)  # gradients accumulate onto what is there
    gb = np.full(OC, -0.25, np.float32)
    dx = ops.conv2d_backward(dy, col, w, x.shape, stride=s, padding=p, dilation=d, groups=g, grad_weight=gw,
                             grad_bias=gb if bias else None)
    kw_ = dict(stride=ops._check.ints(s, 2, "s", 1), padding=ops._check.ints(p, 2, "p", 0),
               dilation=ops._check.ints(d, 2, "d", 1), groups=g)
    ry, rdx, rdw, rdb = _twin_conv(x, w, b, dy, **kw_)
    # float32 sums of K unit-scale products (sequential in the direct kernels): error grows with K
    atol = max(1e-5, 3e-7 * max(C // g, OC // g) * kh * kw)
    assert_close(y, ry, rtol=1e-5, atol=atol, name="y")
    assert_close(dx, rdx, rtol=1e-5, atol=atol, name="dx")
    assert_close(gw, rdw + 0.5, rtol=1e-5, atol=1e-4, name="dw")
    if bias:
        assert_close(gb, rdb - 0.25, rtol=1e-5, atol=1e-4, name="db")


@pytest.mark.parametrize("case", [(2, 3, 7, 9, 5, 3, 1, 1, 1, 1), (2, 2, 5, 5, 3, 3, 1, 3, 1, 1),
                                  (2, 6, 8, 8, 9, 3, 2, 2, 1, 3), (2, 8, 9, 9, 8, 3, 2, 1, 1, 8)])
def test_conv2d_saves_packs_not_columns(case):
    # Every fused CPU convolution (any stride, padding, groups) saves the zero-padded input packs
    # (packs of images, per-pack size) and needs no workspace; the NumPy twin keeps the column matrix.
    N, C, H, W, OC, k, s, p, d, g = case
    col_shape, work_shape = ops.conv2d_buffer_shapes((N, C, H, W), (OC, C // g, k, k), stride=s, padding=p,
                                                     dilation=d, groups=g)
    packs, size = col_shape
    assert work_shape is None and 1 <= packs <= N and packs * size >= N * C * (H + 2 * p) * (W + 2 * p) // (s * s)
    with use_backend("numpy"):
        col_shape, work_shape = ops.conv2d_buffer_shapes((N, C, H, W), (OC, C // g, k, k), stride=s, padding=p,
                                                         dilation=d, groups=g)
        OH, OW = ((n + 2 * p - d * (k - 1) - 1) // s + 1 for n in (H, W))
        assert col_shape == (C * k * k, N * OH * OW)
        assert work_shape is not None


def test_conv2d_skips_input_grad_and_reuses_buffers():
    rng = np.random.default_rng(3)
    x, w = _rand(rng, (3, 4, 9, 7)), _rand(rng, (5, 4, 3, 3))
    out = np.empty((3, 5, 9, 7), np.float32)
    col_shape, work_shape = ops.conv2d_buffer_shapes(x.shape, w.shape, padding=1)
    col = np.empty(col_shape, np.float32)
    work = None if work_shape is None else np.empty(work_shape, np.float32)
    y, c = ops.conv2d_forward(x, w, None, padding=1, out=out, col=col, workspace=work)
    assert y is out and c is col
    gw = np.zeros_like(w)
    dy = _rand(rng, y.shape)
    assert ops.conv2d_backward(dy, col, w, x.shape, padding=1, grad_weight=gw, need_input_grad=False,
                               workspace=work) is None
    _, rdx, rdw, _ = _twin_conv(x, w, None, dy, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
    assert_close(gw, rdw, rtol=1e-5, atol=1e-4, name="dw")


def test_conv_op_errors_name_the_argument():
    x = np.zeros((2, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match="x has 3 channels"):
        ops.conv2d_forward(x, np.zeros((4, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        ops.conv2d_forward(x, np.zeros((4, 3, 7, 7), np.float32))
    with pytest.raises(ValueError, match="divisible by groups"):
        ops.conv2d_forward(np.zeros((2, 4, 5, 5), np.float32), np.zeros((3, 2, 3, 3), np.float32), groups=2)
    with pytest.raises(TypeError, match="weight must have dtype float32"):
        ops.conv2d_forward(x, np.zeros((4, 3, 3, 3), np.float64))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        ops.conv2d_forward(x, np.zeros((4, 3, 3, 3), np.float32), stride=0)
    with pytest.raises(ValueError, match="bias must have shape"):
        ops.conv2d_forward(x, np.zeros((4, 3, 3, 3), np.float32), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="out must have shape"):
        ops.conv2d_forward(x, np.zeros((4, 3, 3, 3), np.float32), out=np.zeros((2, 4, 5, 5), np.float32))


@pytest.mark.parametrize("shape", [(2, 3, 0, 4), (2, 3, 4, 0), (0, 3, 0, 4), (2, 3, 0, 0)])
def test_conv_refuses_empty_planes_where_torch_does(shape):
    torch = torch_or_skip()
    x = np.zeros(shape, np.float32)
    layer = nn.Conv2d(3, 2, 1, padding=1)
    try:
        expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(layer.weight.data),
                                              padding=1).numpy()
    except RuntimeError:
        expected = None
    if expected is None:
        with pytest.raises(ValueError, match="only a batch or channel count may be 0"):
            layer(x)
    else:
        y = layer(x)
        assert y.shape == expected.shape
        assert layer.backward(np.ones_like(y)).shape == x.shape


def _torch_conv(torch, dims, x, layer):
    conv = torch.nn.functional.conv2d if dims == 2 else torch.nn.functional.conv1d
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tw = torch.tensor(layer.weight.data, dtype=torch.float64, requires_grad=True)
    tb = None if layer.bias is None else torch.tensor(layer.bias.data, dtype=torch.float64, requires_grad=True)
    ty = conv(tx, tw, tb, stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
    return tx, tw, tb, ty


@pytest.mark.parametrize("dims,case", [(2, c) for c in CONV2D_CASES] + [(1, c) for c in CONV1D_CASES])
def test_conv_layers_match_torch(dims, case):
    torch = torch_or_skip()
    rng = np.random.default_rng(5)
    if dims == 2:
        N, C, H, W, OC, k, s, p, d, g = case
        x = _rand(rng, (N, C, H, W))
        layer = nn.Conv2d(C, OC, k, stride=s, padding=p, dilation=d, groups=g, bias=bool(N % 2))
    else:
        N, C, L, OC, k, s, p, d, g = case
        x = _rand(rng, (N, C, L))
        layer = nn.Conv1d(C, OC, k, stride=s, padding=p, dilation=d, groups=g, bias=bool(N % 2))
    layer.weight.grad[...] = 0.125
    tx, tw, tb, ty = _torch_conv(torch, dims, x, layer)
    for step in range(2):  # the second step reuses every buffer
        y = layer(x)
        assert_close(y, ty.detach().numpy(), rtol=1e-4, atol=1e-4, name=f"y step {step}")
        dy = np.cos(np.arange(y.size, dtype=np.float32) * (step + 1)).reshape(y.shape)
        dx = layer.backward(dy)
        tx.grad = None
        ty.backward(torch.tensor(dy, dtype=torch.float64), retain_graph=True)
        assert_close(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-4, name=f"dx step {step}")
    # two backward passes accumulated, on top of the initial 0.125
    assert_close(layer.weight.grad, tw.grad.numpy() + 0.125, rtol=1e-4, atol=1e-3, name="dw")
    if tb is not None:
        assert_close(layer.bias.grad, tb.grad.numpy(), rtol=1e-4, atol=1e-3, name="db")


def _gradcheck_layer(layer, x, tol=1e-6):
    """d(sum(layer(x) * R)) against central differences, float64 on the NumPy backend."""
    rng = np.random.default_rng(2)
    h = 1e-6
    with use_backend("numpy"):
        layer.double()
        y = layer(x)
        R = rng.standard_normal(y.shape)
        layer.zero_grad()
        layer(x)
        gx = np.array(layer.backward(R))
        f = lambda: float(np.sum(layer(x) * R))  # noqa: E731
        targets = [("x", x, gx)] + [(n, p.data, np.array(p.grad)) for n, p in layer.named_parameters()]
        for name, arr, grad in targets:
            for flat in rng.choice(arr.size, size=min(10, arr.size), replace=False):
                idx = np.unravel_index(flat, arr.shape)
                old = arr[idx]
                arr[idx] = old + h
                fp = f()
                arr[idx] = old - h
                fm = f()
                arr[idx] = old
                num = (fp - fm) / (2 * h)
                assert abs(grad[idx] - num) <= tol * (1 + abs(num)), f"d/d{name}{idx}: {grad[idx]} vs {num}"


@pytest.mark.parametrize("case", CONV2D_CASES[:4])
def test_conv2d_finite_differences(case):
    N, C, H, W, OC, k, s, p, d, g = case
    x = np.random.default_rng(8).standard_normal((N, C, H, W))
    _gradcheck_layer(nn.Conv2d(C, OC, k, stride=s, padding=p, dilation=d, groups=g), x)


@pytest.mark.parametrize("case", CONV1D_CASES)
def test_conv1d_finite_differences(case):
    N, C, L, OC, k, s, p, d, g = case
    x = np.random.default_rng(9).standard_normal((N, C, L))
    _gradcheck_layer(nn.Conv1d(C, OC, k, stride=s, padding=p, dilation=d, groups=g, bias=False), x)


def test_conv_default_init_follows_pytorch_bounds():
    layer = nn.Conv2d(16, 37, (3, 5))
    bound = 1.0 / math.sqrt(16 * 15)  # kaiming_uniform(a=sqrt(5)) and the bias share this bound
    for arr in (layer.weight.data, layer.bias.data):
        assert np.abs(arr).max() <= bound
        assert np.abs(arr).max() > 0.8 * bound  # spread over the interval, not collapsed
    assert layer.weight.shape == (37, 16, 3, 5)
    assert list(layer.state_dict()) == ["weight", "bias"]


def test_conv_layer_padding_same_and_errors():
    x = np.random.default_rng(0).standard_normal((2, 3, 10)).astype(np.float32)
    assert nn.Conv1d(3, 4, 5, padding="same", dilation=2)(x).shape == (2, 4, 10)
    assert nn.Conv1d(3, 4, 5, padding="valid")(x).shape == (2, 4, 6)
    with pytest.raises(ValueError, match="expected input of shape"):
        nn.Conv2d(3, 4, 3)(x)
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv1d(3, 4, 3, groups=2)
    with pytest.raises(TypeError, match="float32 input"):
        nn.Conv1d(3, 4, 3)(x.astype(np.float64))
    layer = nn.Conv1d(3, 4, 3)
    y = layer(x)
    layer.backward(np.ones_like(y))
    with pytest.raises(RuntimeError, match="backward"):
        layer.backward(np.ones_like(y))


def test_conv_fused_matches_numpy_backend_float32():
    rng = np.random.default_rng(4)
    x = _rand(rng, (4, 6, 12, 10))
    layer = nn.Conv2d(6, 8, 3, stride=(2, 1), padding=1, groups=2)
    y = np.array(layer(x))
    dy = _rand(rng, y.shape)
    dx = np.array(layer.backward(dy))
    dw = np.array(layer.weight.grad)
    layer.zero_grad()
    with use_backend("numpy"):
        assert_close(layer(x), y, rtol=1e-5, atol=1e-5, name="y")
        assert_close(layer.backward(dy), dx, rtol=1e-5, atol=1e-5, name="dx")
    assert_close(layer.weight.grad, dw, rtol=1e-5, atol=1e-4, name="dw")

