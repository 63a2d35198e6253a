"""Pooling: the fused kernels against their float64 NumPy twins, the layers against torch.nn
(forward, input gradient, max-pool indices) and against central differences, and errors."""
import numpy as np
import pytest

from fusetrain import _core, nn, ops
from fusetrain.backend import use_backend
from testutils import assert_close, torch_or_skip

# (kernel, stride, padding, dilation) on a (3, 5, 11, 7) input
MAX2D = [(2, None, 0, 1), (3, 2, 1, 1), ((3, 2), (1, 2), (1, 1), (2, 1)), (5, 3, 2, 1), (1, 1, 0, 1),
         ((3, 2), (1, 2), 0, (2, 1)), (3, 1, 0, 2)]
AVG2D = [(2, None, 0, True), (3, 2, 1, True), (3, 2, 1, False), ((3, 2), (1, 2), (1, 1), False), (4, 3, 2, True)]
ADAPTIVE2D = [1, (2, 3), (4, 4), (11, 7), (5, None), (3, 5)]


def _x(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("k,s,p,d", MAX2D)
def test_max_pool2d_matches_twin(k, s, p, d):
    x = _x((3, 5, 11, 7))
    y, idx = ops.max_pool2d_forward(x, k, s, p, d)
    dy = _x(y.shape, 1)
    dx = ops.max_pool2d_backward(dy, idx, x.shape, k, s, p, d)
    with use_backend("numpy"):
        ry, ridx = ops.max_pool2d_forward(x.astype(np.float64), k, s, p, d)
        rdx = ops.max_pool2d_backward(dy.astype(np.float64), ridx, x.shape, k, s, p, d)
    np.testing.assert_array_equal(idx, ridx)
    assert_close(y, ry, rtol=0, atol=0, name="y")
    assert_close(dx, rdx, rtol=1e-6, atol=1e-6, name="dx")


def test_max_pool_nan_wins_and_ties_take_first():
    x = np.array([[[[1.0, 1.0, 0.0, np.nan], [1.0, 0.5, 2.0, 2.0]]]], np.float32)
    y, idx = ops.max_pool2d_forward(x, 2)
    assert y[0, 0, 0, 0] == 1.0 and idx[0, 0, 0, 0] == 0
    assert np.isnan(y[0, 0, 0, 1]) and idx[0, 0, 0, 1] == 3
    with use_backend("numpy"):
        ry, ridx = ops.max_pool2d_forward(x, 2)
    np.testing.assert_array_equal(idx, ridx)


@pytest.mark.parametrize("k,s,p,d", MAX2D)
def test_max_pool2d_nan_inf_and_ties_match_twin(k, s, p, d):
    # Small integers (many ties), -inf and NaN anywhere in the windows: values and the chosen
    # indices must equal the twin's, on the padded and the no-padding kernels alike.
    rng = np.random.default_rng(7)
    x = rng.integers(-2, 3, size=(2, 3, 11, 7)).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = -np.inf
    x[rng.random(x.shape) < 0.1] = np.nan
    y, idx = ops.max_pool2d_forward(x, k, s, p, d)
    with use_backend("numpy"):
        ry, ridx = ops.max_pool2d_forward(x, k, s, p, d)
    np.testing.assert_array_equal(idx, ridx)
    np.testing.assert_array_equal(y, ry)


@pytest.mark.parametrize("k,s,p,cip", AVG2D)
def test_avg_pool2d_matches_twin(k, s, p, cip):
    x = _x((3, 5, 11, 7))
    y = ops.avg_pool2d_forward(x, k, s, p, cip)
    dy = _x(y.shape, 1)
    dx = ops.avg_pool2d_backward(dy, x.shape, k, s, p, cip)
    with use_backend("numpy"):
        ry = ops.avg_pool2d_forward(x.astype(np.float64), k, s, p, cip)
        rdx = ops.avg_pool2d_backward(dy.astype(np.float64), x.shape, k, s, p, cip)
    assert_close(y, ry, rtol=1e-6, atol=1e-6, name="y")
    assert_close(dx, rdx, rtol=1e-6, atol=1e-6, name="dx")


@pytest.mark.parametrize("o", ADAPTIVE2D)
def test_adaptive_avg_pool2d_matches_twin(o):
    x = _x((3, 5, 11, 7))
    y = ops.adaptive_avg_pool2d_forward(x, o)
    dy = _x(y.shape, 1)
    dx = ops.adaptive_avg_pool2d_backward(dy, x.shape)
    with use_backend("numpy"):
        ry = ops.adaptive_avg_pool2d_forward(x.astype(np.float64), o)
        rdx = ops.adaptive_avg_pool2d_backward(dy.astype(np.float64), x.shape)
    assert_close(y, ry, rtol=1e-6, atol=1e-6, name="y")
    assert_close(dx, rdx, rtol=1e-6, atol=1e-6, name="dx")


def _layers_2d():
    out = [(nn.MaxPool2d(k, s, p, d), "max_pool2d", dict(kernel_size=k, stride=s, padding=p, dilation=d))
           for k, s, p, d in MAX2D]
    out += [(nn.AvgPool2d(k, s, p, count_include_pad=c), "avg_pool2d",
             dict(kernel_size=k, stride=s, padding=p, count_include_pad=c)) for k, s, p, c in AVG2D]
    out += [(nn.AdaptiveAvgPool2d(o), "adaptive_avg_pool2d", dict(output_size=o)) for o in ADAPTIVE2D]
    return out


def _layers_1d():
    return [(nn.MaxPool1d(2), "max_pool1d", dict(kernel_size=2)),
            (nn.MaxPool1d(3, 2, 1, 2), "max_pool1d", dict(kernel_size=3, stride=2, padding=1, dilation=2)),
            (nn.AvgPool1d(3, 2, 1), "avg_pool1d", dict(kernel_size=3, stride=2, padding=1)),
            (nn.AvgPool1d(4, 1, 2, count_include_pad=False), "avg_pool1d",
             dict(kernel_size=4, stride=1, padding=2, count_include_pad=False)),
            (nn.AdaptiveAvgPool1d(5), "adaptive_avg_pool1d", dict(output_size=5)),
            (nn.AdaptiveAvgPool1d(13), "adaptive_avg_pool1d", dict(output_size=13))]


@pytest.mark.parametrize("dims", [1, 2])
def test_pool_layers_match_torch(dims):
    torch = torch_or_skip()
    F = torch.nn.functional
    x = _x((3, 5, 11, 7) if dims == 2 else (2, 3, 13))
    for layer, fname, kw in (_layers_2d() if dims == 2 else _layers_1d()):
        tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        ty = getattr(F, fname)(tx, **kw)
        for step in range(2):
            y = layer(x)
            assert_close(y, ty.detach().numpy(), rtol=1e-6, atol=1e-6, name=f"{layer!r} y")
            dy = np.sin(np.arange(y.size, dtype=np.float32) + step).reshape(y.shape)
            tx.grad = None
            ty.backward(torch.tensor(dy, dtype=torch.float64), retain_graph=True)
            assert_close(layer.backward(dy), tx.grad.numpy(), rtol=1e-6, atol=1e-6, name=f"{layer!r} dx")


def test_max_pool_indices_match_torch():
    torch = torch_or_skip()
    x = _x((2, 3, 9, 8))
    for k, s, p, d in MAX2D:
        _, idx = ops.max_pool2d_forward(x, k, s, p, d)
        _, tidx = torch.nn.functional.max_pool2d(torch.tensor(x), k, s, p, d, return_indices=True)
        np.testing.assert_array_equal(idx, tidx.numpy())


def test_global_avg_pool_matches_torch():
    torch = torch_or_skip()
    for shape, layer in (((3, 4, 5, 6), nn.GlobalAvgPool2d()), ((3, 4, 7), nn.GlobalAvgPool1d())):
        x = _x(shape)
        tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        ty = tx.mean(dim=tuple(range(2, len(shape))))
        y = layer(x)
        assert y.shape == shape[:2]
        assert_close(y, ty.detach().numpy(), rtol=1e-6, atol=1e-6, name="y")
        dy = _x(y.shape, 3)
        ty.backward(torch.tensor(dy, dtype=torch.float64))
        assert_close(layer.backward(dy), tx.grad.numpy(), rtol=1e-6, atol=1e-6, name="dx")


@pytest.mark.parametrize("layer", [nn.AvgPool2d(3, 2, 1), nn.AvgPool2d(2, 1, 1, count_include_pad=False),
                                   nn.AdaptiveAvgPool2d((3, 2)), nn.MaxPool2d(3, 2, 1), nn.MaxPool1d(3, 2, 1),
                                   nn.AvgPool1d(3, 2, 1), nn.GlobalAvgPool2d()])
def test_pool_finite_differences(layer):
    rng = np.random.default_rng(6)
    dims = 1 if "1d" in type(layer).__name__ else 2
    # distinct, well-separated values: max pooling is differentiable away from ties
    shape = (2, 3, 7, 6) if dims == 2 else (2, 3, 11)
    x = rng.permutation(np.prod(shape)).reshape(shape).astype(np.float64) * 0.1
    with use_backend("numpy"):
        y = layer(x)
        R = rng.standard_normal(y.shape)
        gx = np.array(layer.backward(R))
        h = 1e-6
        for flat in rng.choice(x.size, 12, replace=False):
            idx = np.unravel_index(flat, x.shape)
            old = x[idx]
            x[idx] = old + h
            fp = float(np.sum(layer(x) * R))
            x[idx] = old - h
            fm = float(np.sum(layer(x) * R))
            x[idx] = old
            num = (fp - fm) / (2 * h)
            assert abs(gx[idx] - num) <= 1e-6 * (1 + abs(num)), f"{idx}: {gx[idx]} vs {num}"


def test_pool_errors_are_clear():
    x = _x((2, 3, 6, 6))
    with pytest.raises(ValueError, match="at most half"):
        ops.max_pool2d_forward(x, 2, 1, 2)
    with pytest.raises(ValueError, match="does not fit"):
        ops.avg_pool2d_forward(x, 7)
    with pytest.raises(ValueError, match="must be 4-D"):
        ops.max_pool2d_forward(x[0], 2)
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        ops.avg_pool1d_forward(x[0], 0)
    with pytest.raises(ValueError, match="output_size must be >= 1"):
        ops.adaptive_avg_pool2d_forward(x, 0)
    with pytest.raises(ValueError, match="expected a 3-D input"):
        nn.MaxPool1d(2)(x)
    with pytest.raises(NotImplementedError, match="ceil_mode"):
        nn.MaxPool2d(2, ceil_mode=True)
    with pytest.raises(RuntimeError, match="before forward"):
        nn.AvgPool2d(2).backward(x)


@pytest.mark.parametrize("bad", [100000000, -2000000000, 1000, 16, -2])
def test_max_pool_backward_refuses_indices_outside_the_plane(bad):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    y, idx = ops.max_pool2d_forward(x, 2)
    idx = idx.copy()
    idx[1, 2, 1, 0] = bad
    g = np.ones_like(y)
    for backend in ("fused", "numpy"):
        gx = np.full(x.shape, 7.0, np.float32)
        with use_backend(backend):
            with pytest.raises(ValueError, match=f"indices: entry .* is {bad}, outside the input plane of 16"):
                ops.max_pool2d_backward(g, idx, x.shape, 2, grad_input=gx)
        np.testing.assert_array_equal(gx, 7.0)  # nothing written
    gx = np.full(x.size, 7.0, np.float32)
    with pytest.raises(ValueError, match="indices"):
        _core.max_pool2d_backward(g, idx, gx, 6, 4, 4, 2, 2, 2, 2, 0, 0, 1, 1)
    np.testing.assert_array_equal(gx, 7.0)


def _torch_max_pool_reference(torch, x, k, s, p, d):
    """torch's max_pool2d of x (float64) and its input gradient for upstream dy, with the padding
    made explicit as -inf pixels: torch's own padded backward writes out of bounds for windows
    wholly in the padding (it gives them an index past the plane), while a window of explicit
    -inf padding sends its gradient to a padding pixel, cropped away: nowhere, as torch means."""
    F = torch.nn.functional
    (ph, pw) = (p, p) if isinstance(p, int) else p
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ty = F.max_pool2d(F.pad(tx, (pw, pw, ph, ph), value=-np.inf), k, s, 0, d)
    return tx, ty


# Windows that lie wholly in the padding: the dilated taps of a window straddle the input. torch
# refuses padding above half the (undilated) kernel, which leaves only windows that are all empty
# along one axis; the larger padding we allow (up to half the dilated kernel) mixes them with
# windows that hold pixels.
EMPTY_WINDOWS = [(2, 1, 1, 2, (1, 1)), (2, 1, 1, 2, (1, 4)), ((1, 2), 1, (0, 1), (1, 2), (2, 1)),
                 (2, 2, 1, 3, (2, 2)), (2, 1, 2, 3, (2, 5)), (2, 1, (2, 0), (3, 1), (2, 3))]


@pytest.mark.parametrize("k,s,p,d,hw", EMPTY_WINDOWS)
def test_max_pool_window_wholly_in_padding_routes_its_gradient_nowhere(k, s, p, d, hw):
    torch = torch_or_skip()
    x = _x((2, 3) + hw, 5)
    tx, ty = _torch_max_pool_reference(torch, x, k, s, p, d)
    assert torch.isneginf(ty).any(), "the case must have a window wholly in the padding"
    y, idx = ops.max_pool2d_forward(x, k, s, p, d)
    assert_close(y, ty.detach().numpy(), rtol=0, atol=0, name="y")
    if all(2 * pi <= ki for pi, ki in zip(np.broadcast_to(p, 2), np.broadcast_to(k, 2))):
        # torch's own forward (its backward is not run: see _torch_max_pool_reference)
        assert_close(y, torch.nn.functional.max_pool2d(torch.tensor(x), k, s, p, d).numpy(), rtol=0, atol=0,
                     name="y vs torch")
    assert ((idx == -1) == np.isneginf(y)).all()
    dy = _x(y.shape, 6)
    ty.backward(torch.tensor(dy, dtype=torch.float64))
    dx = ops.max_pool2d_backward(dy, idx, x.shape, k, s, p, d)
    assert_close(dx, tx.grad.numpy(), rtol=1e-6, atol=1e-6, name="dx")
    with use_backend("numpy"):
        ry, ridx = ops.max_pool2d_forward(x.astype(np.float64), k, s, p, d)
        rdx = ops.max_pool2d_backward(dy.astype(np.float64), ridx, x.shape, k, s, p, d)
    np.testing.assert_array_equal(idx, ridx)
    assert_close(rdx, tx.grad.numpy(), rtol=1e-12, atol=1e-12, name="twin dx")
    layer = nn.MaxPool2d(k, s, p, d)
    assert_close(layer(x), y, rtol=0, atol=0, name="layer y")
    assert_close(layer.backward(dy), tx.grad.numpy(), rtol=1e-6, atol=1e-6, name="layer dx")


def test_max_pool_window_of_minus_inf_points_at_its_first_pixel():
    # A window whose pixels are all -inf (some of its taps in the padding) takes its first pixel,
    # never a padding tap before it; the twin and the kernel agree with torch's index.
    torch = torch_or_skip()
    x = np.full((1, 1, 3, 3), -np.inf, np.float32)
    x[0, 0, 2, 2] = 1.0
    for k, s, p, d in ((3, 1, 1, 1), (2, 1, 1, 1), (3, 2, 1, 2)):
        _, idx = ops.max_pool2d_forward(x, k, s, p, d)
        with use_backend("numpy"):
            _, ridx = ops.max_pool2d_forward(x, k, s, p, d)
        _, tidx = torch.nn.functional.max_pool2d(torch.tensor(x), k, s, p, d, return_indices=True)
        np.testing.assert_array_equal(idx, tidx.numpy())
        np.testing.assert_array_equal(ridx, tidx.numpy())


def _empty_cases():
    F2 = [(lambda: nn.MaxPool2d(2, padding=1), "max_pool2d", dict(kernel_size=2, padding=1)),
          (lambda: nn.AvgPool2d(2, 1, 1), "avg_pool2d", dict(kernel_size=2, stride=1, padding=1)),
          (lambda: nn.AdaptiveAvgPool2d(2), "adaptive_avg_pool2d", dict(output_size=2))]
    F1 = [(lambda: nn.MaxPool1d(2, padding=1), "max_pool1d", dict(kernel_size=2, padding=1)),
          (lambda: nn.AvgPool1d(1), "avg_pool1d", dict(kernel_size=1)),
          (lambda: nn.AdaptiveAvgPool1d(3), "adaptive_avg_pool1d", dict(output_size=3))]
    shapes2 = [(0, 3, 4, 4), (2, 0, 4, 4), (2, 3, 0, 4), (2, 3, 4, 0), (2, 3, 0, 0)]
    shapes1 = [(0, 3, 4), (2, 0, 4), (2, 3, 0)]
    return [(m, f, kw, sh) for m, f, kw in F2 for sh in shapes2] + [(m, f, kw, sh) for m, f, kw in F1 for sh in shapes1]


@pytest.mark.parametrize("make,fname,kw,shape", _empty_cases())
def test_pools_refuse_empty_planes_where_torch_does(make, fname, kw, shape):
    torch = torch_or_skip()
    x = np.zeros(shape, np.float32)
    try:
        expected = getattr(torch.nn.functional, fname)(torch.from_numpy(x), **kw).numpy()
    except RuntimeError:
        expected = None
    layer = make()
    for training in (True, False):
        layer.train(training)
        if expected is None:
            with pytest.raises(ValueError, match=r"must be >= 1 \(only the batch may be empty\), got shape"):
                layer(x)
        else:
            y = layer(x)
            assert y.shape == expected.shape
            if training:
                assert layer.backward(np.ones_like(y)).shape == x.shape
    op = getattr(ops, fname + "_forward", None)
    if op is not None:
        args = tuple(kw.values())
        if expected is None:
            with pytest.raises(ValueError, match="must be >= 1"):
                op(x, *args)
        else:
            assert op(x, *args).__class__ in (tuple, np.ndarray)


def test_pool_kernels_refuse_empty_planes():
    with pytest.raises(ValueError, match="at least 1x1 pixels"):
        _core.max_pool2d_forward(np.zeros(0, np.float32), np.zeros(6, np.float32), np.zeros(6, np.int32), 6, 0, 0,
                                2, 2, 1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="at least 1x1 pixels"):
        _core.adaptive_avg_pool2d_forward(np.zeros(0, np.float32), np.zeros(4, np.float32), 1, 0, 3, 2, 2)


BAD_GEOMETRY = {
    "maxpool-stride-0": (lambda: nn.MaxPool2d(2, stride=0), "MaxPool2d: stride must be >= 1"),
    "maxpool-kernel-0": (lambda: nn.MaxPool2d(0), "MaxPool2d: kernel_size must be >= 1"),
    "maxpool-padding-negative": (lambda: nn.MaxPool2d(2, padding=-1), "MaxPool2d: padding must be >= 0"),
    "maxpool-dilation-0": (lambda: nn.MaxPool2d(2, dilation=0), "MaxPool2d: dilation must be >= 1"),
    "maxpool-padding-too-large": (lambda: nn.MaxPool2d(2, padding=2), "at most half of the effective kernel size"),
    "maxpool1d-pair": (lambda: nn.MaxPool1d((2, 2)), "MaxPool1d: kernel_size must be an int or a sequence of 1 ints"),
    "avgpool-kernel-0": (lambda: nn.AvgPool2d((2, 0)), "AvgPool2d: kernel_size must be >= 1"),
    "avgpool1d-stride-0": (lambda: nn.AvgPool1d(3, stride=0), "AvgPool1d: stride must be >= 1"),
    "avgpool-padding-too-large": (lambda: nn.AvgPool2d(2, padding=2), "at most half of the kernel size"),
    "adaptive-0": (lambda: nn.AdaptiveAvgPool2d(0), "AdaptiveAvgPool2d: output_size must be an int >= 1"),
    "adaptive1d-pair": (lambda: nn.AdaptiveAvgPool1d((2, 3)), "AdaptiveAvgPool1d: output_size"),
    "conv-stride-0": (lambda: nn.Conv2d(1, 1, 3, stride=0), "stride must be >= 1"),
    "conv1d-kernel-0": (lambda: nn.Conv1d(1, 1, 0), "kernel_size must be >= 1"),
}


@pytest.mark.parametrize("case", sorted(BAD_GEOMETRY))
def test_window_layers_refuse_bad_geometry_at_construction(case):
    make, match = BAD_GEOMETRY[case]
    with pytest.raises((ValueError, TypeError), match=match):
        make()


@pytest.mark.parametrize("call", [
    lambda a: ops.max_pool2d_forward(a, 3, 1, 1, out=a),
    lambda a: ops.avg_pool2d_forward(a, 3, 1, 1, out=a),
    lambda a: ops.max_pool1d_forward(a.reshape(2, 3, 36), 3, 1, 1, out=a.reshape(2, 3, 36)),
    lambda a: ops.avg_pool1d_forward(a.reshape(2, 3, 36), 3, 1, 1, out=a.reshape(2, 3, 36)),
    lambda a: ops.avg_pool2d_backward(a, a.shape, 3, 1, 1, grad_input=a),
    lambda a: ops.max_pool2d_backward(a, np.zeros(a.shape, np.int32), a.shape, 3, 1, 1, grad_input=a),
    lambda a: ops.adaptive_avg_pool2d_forward(a, (6, 6), out=a),
], ids=["max2d", "avg2d", "max1d", "avg1d", "avg2d-backward", "max2d-backward", "adaptive"])
def test_pooling_refuses_an_output_that_overlaps_its_input_and_changes_nothing(call):
    a = np.random.default_rng(0).normal(size=(2, 3, 6, 6)).astype(np.float32)
    before = a.copy()
    with pytest.raises(ValueError, match="must not overlap"):
        call(a)
    assert np.array_equal(a, before)
