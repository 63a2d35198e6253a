"""Property-based tests (hypothesis): every op on the compiled kernels against its float64 NumPy
twin over random shapes, strides, padding, dilation, groups, degenerate sizes and non-contiguous
inputs. Where the arguments are invalid both must refuse them with the same ValueError (never a
crash). The checkpoint reader over random truncation and corruption is in
test_checkpoint_properties.py.

FUSETRAIN_HYPOTHESIS_EXAMPLES sets the examples per test (the sanitizer run uses fewer)."""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fusetrain import ops
from fusetrain.backend import use_backend
from testutils import assert_close

PROPERTY = settings(max_examples=int(os.environ.get("FUSETRAIN_HYPOTHESIS_EXAMPLES", "100")), deadline=None,
                    database=None, suppress_health_check=[HealthCheck.too_slow])

LAYOUTS = ("contiguous", "strided", "transposed", "reversed")


def _data(rng, shape, kind="normal"):
    if kind == "ties":  # small integers: many equal values
        return rng.integers(-2, 3, size=shape).astype(np.float64)
    return rng.standard_normal(shape)


def _layout(a, layout):
    """a (float32) with the same values in another memory layout."""
    if a.ndim == 0 or a.size == 0 or layout == "contiguous":
        return a
    if layout == "strided":
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if layout == "transposed":
        return np.ascontiguousarray(a.T).T
    return np.ascontiguousarray(a[::-1])[::-1]


def _f32(rng, shape, layout="contiguous", kind="normal"):
    return _layout(_data(rng, shape, kind).astype(np.float32), layout)


def _same_refusal(fused, twin):
    """Runs fused() and, with the NumPy twins, twin(); returns both results, or checks that both
    raised ValueError with the same message."""
    try:
        got = fused()
    except ValueError as exc:
        event("refused")  # shown by pytest --hypothesis-show-statistics
        with pytest.raises(ValueError) as info:
            with use_backend("numpy"):
                twin()
        assert str(info.value) == str(exc)
        return None
    event("computed")
    with use_backend("numpy"):
        return got, twin()


def _close(actual, expected, name, rtol=1e-4):
    """float32 results against float64 references, tolerance relative to the reference's scale."""
    expected = np.asarray(expected, np.float64)
    finite = expected[np.isfinite(expected)]
    scale = float(np.max(np.abs(finite))) if finite.size else 1.0
    assert_close(actual, expected, rtol=rtol, atol=rtol * max(scale, 1.0), name=name)


seeds = st.integers(0, 2**32 - 1)
layouts = st.sampled_from(LAYOUTS)


# ---------------------------------------------------------------- GEMM


@PROPERTY
@given(seed=seeds, M=st.integers(0, 40), K=st.integers(0, 40), N=st.integers(0, 40), la=layouts, lb=layouts,
       accumulate=st.booleans())
def test_matmul(seed, M, K, N, la, lb, accumulate):
    rng = np.random.default_rng(seed)
    a, b = _f32(rng, (M, K), la), _f32(rng, (K, N), lb)
    out = _f32(rng, (M, N))
    start = out.astype(np.float64)
    ops.matmul(a, b, out, accumulate=accumulate)
    ref = a.astype(np.float64) @ b.astype(np.float64) + (start if accumulate else 0.0)
    _close(out, ref, "matmul")


# ---------------------------------------------------------------- convolution

geometry = st.fixed_dictionaries(dict(
    N=st.integers(0, 3), groups=st.integers(1, 3), cg=st.integers(1, 3), ocg=st.integers(1, 3),
    H=st.integers(0, 9), W=st.integers(0, 9), kh=st.integers(1, 4), kw=st.integers(1, 4),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), padding=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    dilation=st.tuples(st.integers(1, 3), st.integers(1, 3))))


@PROPERTY
@given(seed=seeds, g=geometry, bias=st.booleans(), layout=layouts, depthwise=st.booleans())
def test_conv2d_forward_backward(seed, g, bias, layout, depthwise):
    rng = np.random.default_rng(seed)
    groups = g["groups"]
    C = groups * (1 if depthwise else g["cg"])
    OC = groups * g["ocg"]
    x = _f32(rng, (g["N"], C, g["H"], g["W"]), layout)
    w = _f32(rng, (OC, C // groups, g["kh"], g["kw"]), layout)
    b = _f32(rng, (OC,)) if bias else None
    kw = dict(stride=g["stride"], padding=g["padding"], dilation=g["dilation"], groups=groups)

    def run():
        y, col = ops.conv2d_forward(x if not use_np() else x.astype(np.float64),
                                    w if not use_np() else w.astype(np.float64),
                                    None if b is None else (b if not use_np() else b.astype(np.float64)), **kw)
        dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(y.dtype)
        gw, gb = np.zeros(w.shape, y.dtype), np.zeros(OC, y.dtype)
        dx = ops.conv2d_backward(dy, col, w.astype(y.dtype), x.shape, grad_weight=gw, grad_bias=gb, **kw)
        return y, dx, gw, gb

    res = _same_refusal(run, run)
    if res is not None:
        for name, got, ref in zip(("y", "dx", "dw", "db"), *res):
            _close(got, ref, name)


def use_np():
    from fusetrain import backend
    return backend.get_backend() == "numpy"


@PROPERTY
@given(seed=seeds, N=st.integers(0, 3), C=st.integers(1, 4), OC=st.integers(1, 4), L=st.integers(1, 20),
       k=st.integers(1, 5), s=st.integers(1, 3), p=st.integers(0, 3), d=st.integers(1, 3), layout=layouts)
def test_conv1d_forward_backward(seed, N, C, OC, L, k, s, p, d, layout):
    rng = np.random.default_rng(seed)
    x, w = _f32(rng, (N, C, L), layout), _f32(rng, (OC, C, k), layout)
    kw = dict(stride=s, padding=p, dilation=d)

    def run():
        dt = np.float64 if use_np() else np.float32
        y, col = ops.conv1d_forward(x.astype(dt), w.astype(dt), **kw)
        dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(dt)
        gw = np.zeros(w.shape, dt)
        return y, ops.conv1d_backward(dy, col, w.astype(dt), x.shape, grad_weight=gw, **kw), gw

    res = _same_refusal(run, run)
    if res is not None:
        for name, got, ref in zip(("y", "dx", "dw"), *res):
            _close(got, ref, name)


# ---------------------------------------------------------------- pooling

any_pool_geometry = st.fixed_dictionaries(dict(
    N=st.integers(0, 2), C=st.integers(0, 3), H=st.integers(0, 9), W=st.integers(0, 9),
    k=st.tuples(st.integers(1, 4), st.integers(1, 4)), s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    p=st.tuples(st.integers(0, 2), st.integers(0, 2)), d=st.tuples(st.integers(1, 3), st.integers(1, 3))))


@st.composite
def valid_pool_geometry(draw, dilated=True):
    """Geometries the ops accept: padding at most half the (dilated) kernel, planes it fits."""
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if dilated else (1, 1)
    eff = [di * (ki - 1) + 1 for ki, di in zip(k, d)]
    p = tuple(draw(st.integers(0, e // 2)) for e in eff)
    size = [draw(st.integers(max(1, e - 2 * pi), max(1, e - 2 * pi) + 7)) for e, pi in zip(eff, p)]
    return dict(N=draw(st.integers(0, 2)), C=draw(st.integers(1, 3)), H=size[0], W=size[1], k=k,
                s=(draw(st.integers(1, 3)), draw(st.integers(1, 3))), p=p, d=d)


# half valid, half anything (which the ops must refuse as the twins do, or compute alike)
pool_geometry = st.one_of(valid_pool_geometry(), any_pool_geometry)
avg_pool_geometry = st.one_of(valid_pool_geometry(dilated=False), any_pool_geometry)


@PROPERTY
@given(seed=seeds, g=pool_geometry, kind=st.sampled_from(["normal", "ties"]), specials=st.booleans(),
       layout=layouts)
def test_max_pool2d(seed, g, kind, specials, layout):
    rng = np.random.default_rng(seed)
    x64 = _data(rng, (g["N"], g["C"], g["H"], g["W"]), kind)
    if specials and x64.size:
        x64[rng.random(x64.shape) < 0.1] = -np.inf
        x64[rng.random(x64.shape) < 0.05] = np.nan
    x = _layout(x64.astype(np.float32), layout)
    args = (g["k"], g["s"], g["p"], g["d"])

    def run():
        xi = x.astype(np.float64) if use_np() else x
        y, idx = ops.max_pool2d_forward(xi, *args)
        dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(xi.dtype)
        return y, idx, ops.max_pool2d_backward(dy, idx, x.shape, *args)

    res = _same_refusal(run, run)
    if res is not None:
        (y, idx, dx), (ry, ridx, rdx) = res
        np.testing.assert_array_equal(idx, ridx)
        np.testing.assert_array_equal(y, ry.astype(np.float32))
        _close(dx, rdx, "dx", rtol=1e-6)


@PROPERTY
@given(seed=seeds, g=avg_pool_geometry, include_pad=st.booleans(), layout=layouts)
def test_avg_pool2d(seed, g, include_pad, layout):
    rng = np.random.default_rng(seed)
    x = _f32(rng, (g["N"], g["C"], g["H"], g["W"]), layout)
    args = (g["k"], g["s"], g["p"], include_pad)

    def run():
        xi = x.astype(np.float64) if use_np() else x
        y = ops.avg_pool2d_forward(xi, *args)
        dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(xi.dtype)
        return y, ops.avg_pool2d_backward(dy, x.shape, *args)

    res = _same_refusal(run, run)
    if res is not None:
        for name, got, ref in zip(("y", "dx"), *res):
            _close(got, ref, name, rtol=1e-5)


@PROPERTY
@given(seed=seeds, g=pool_geometry, layout=layouts)
def test_pool1d(seed, g, layout):
    rng = np.random.default_rng(seed)
    N, C, L, (k, s, p, d) = g["N"], g["C"], g["W"], (g["k"][1], g["s"][1], g["p"][1], g["d"][1])
    x = _f32(rng, (N, C, L), layout)

    def run():
        xi = x.astype(np.float64) if use_np() else x
        y, idx = ops.max_pool1d_forward(xi, k, s, p, d)
        a = ops.avg_pool1d_forward(xi, k, s, min(p, k // 2))
        return y, idx, ops.max_pool1d_backward(np.ones_like(y), idx, x.shape, k, s, p, d), a

    res = _same_refusal(run, run)
    if res is not None:
        (y, idx, dx, a), (ry, ridx, rdx, ra) = res
        np.testing.assert_array_equal(idx, ridx)
        _close(y, ry, "y", rtol=1e-6)
        _close(dx, rdx, "dx", rtol=1e-6)
        _close(a, ra, "avg", rtol=1e-5)


@PROPERTY
@given(seed=seeds, N=st.integers(0, 2), C=st.integers(0, 3), H=st.integers(0, 9), W=st.integers(0, 9),
       oh=st.one_of(st.none(), st.integers(1, 12)), ow=st.integers(1, 12), layout=layouts)
def test_adaptive_avg_pool2d(seed, N, C, H, W, oh, ow, layout):
    rng = np.random.default_rng(seed)
    x = _f32(rng, (N, C, H, W), layout)

    def run():
        xi = x.astype(np.float64) if use_np() else x
        y = ops.adaptive_avg_pool2d_forward(xi, (oh, ow))
        dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(xi.dtype)
        return y, ops.adaptive_avg_pool2d_backward(dy, x.shape)

    res = _same_refusal(run, run)
    if res is not None:
        for name, got, ref in zip(("y", "dx"), *res):
            _close(got, ref, name, rtol=1e-5)


# ---------------------------------------------------------------- normalization


@PROPERTY
@given(seed=seeds, N=st.integers(1, 6), C=st.integers(1, 4), spatial=st.sampled_from([(), (5,), (3, 2)]),
       training=st.booleans(), affine=st.booleans(), relu=st.booleans(), track=st.booleans(),
       momentum=st.floats(0.0, 1.0), p=st.sampled_from([0.0, 0.3]), layout=layouts)
def test_batchnorm(seed, N, C, spatial, training, affine, relu, track, momentum, p, layout):
    rng = np.random.default_rng(seed)
    shape = (N, C) + spatial
    # a ramp through each channel's values: batch variances far from 0, where the gradient's
    # cancellation would make any float32 implementation imprecise
    S = int(np.prod(spatial))
    ramp = np.arange(N * S, dtype=np.float64).reshape((N, 1) + spatial) if spatial else np.arange(N)[:, None]
    x = _layout((ramp + 0.05 * rng.standard_normal(shape)).astype(np.float32) * 3 + 1, layout)
    w, b = (_f32(rng, (C,)), _f32(rng, (C,))) if affine else (None, None)
    rm, rv = rng.standard_normal(C).astype(np.float32), (rng.random(C) + 0.5).astype(np.float32)
    track = track or not training
    p = p if (relu and training) else 0.0

    def run():
        dt = np.float64 if use_np() else np.float32
        m, v = (rm.astype(dt), rv.astype(dt)) if track else (None, None)
        cast = (lambda a: None if a is None else a.astype(dt))
        y, mean, invstd = ops.batchnorm_forward(x.astype(dt), cast(w), cast(b), m, v, training=training,
                                                momentum=momentum, relu=relu, dropout_p=p, seed=7, offset=8)
        dy = np.random.default_rng(seed + 1).standard_normal(shape).astype(dt)
        gw, gb = np.zeros(C, dt), np.zeros(C, dt)
        dx = ops.batchnorm_backward(dy, x.astype(dt), y, cast(w), mean, invstd, training=training, relu=relu,
                                    dropout_p=p, grad_weight=gw, grad_bias=gb)
        return (y, dx, gw, gb) + ((m, v) if track else ())

    res = _same_refusal(run, run)
    if res is not None:
        for name, got, ref in zip(("y", "dx", "dw", "db", "running_mean", "running_var"), *res):
            _close(got, ref, name, rtol=2e-4)


@PROPERTY
@given(seed=seeds, lead=st.sampled_from([(0,), (1,), (4,), (2, 3)]), norm=st.sampled_from([(1,), (5,), (3, 4)]),
       affine=st.booleans(), layout=layouts)
def test_layernorm(seed, lead, norm, affine, layout):
    rng = np.random.default_rng(seed)
    x = _f32(rng, lead + norm, layout) * 2 - 1
    w, b = (_f32(rng, norm), _f32(rng, norm)) if affine else (None, None)

    def run():
        dt = np.float64 if use_np() else np.float32
        cast = (lambda a: None if a is None else a.astype(dt))
        y, mean, rstd = ops.layernorm_forward(x.astype(dt), cast(w), cast(b), normalized_ndim=len(norm))
        dy = np.random.default_rng(seed + 1).standard_normal(x.shape).astype(dt)
        gw, gb = np.zeros(norm, dt), np.zeros(norm, dt)
        dx = ops.layernorm_backward(dy, x.astype(dt), cast(w), mean, rstd, normalized_ndim=len(norm),
                                    grad_weight=gw, grad_bias=gb)
        return y, dx, gw, gb

    res = _same_refusal(run, run)
    if res is not None:
        for name, got, ref in zip(("y", "dx", "dw", "db"), *res):
            _close(got, ref, name, rtol=2e-4)


# ---------------------------------------------------------------- epilogue, dropout, loss


@PROPERTY
@given(seed=seeds, shape=st.sampled_from([(0, 3), (1, 1), (5, 7), (2, 3, 4), (33,)]),
       act=st.sampled_from(sorted(ops.ACTIVATIONS)), slope=st.floats(0.0, 2.0), p=st.sampled_from([0.0, 0.2, 0.7]),
       bias=st.booleans(), dropout_seed=st.integers(0, 2**64 - 1), block=st.integers(0, 1000), layout=layouts,
       bits=st.booleans())
def test_bias_act_dropout(seed, shape, act, slope, p, bias, dropout_seed, block, layout, bits):
    rng = np.random.default_rng(seed)
    x = _f32(rng, shape, layout)
    b = _f32(rng, shape[-1:]) if bias else None
    kw = dict(act=act, negative_slope=slope, p=p, seed=dropout_seed, offset=4 * block)

    def run():
        dt = np.float64 if use_np() else np.float32
        mask = np.zeros(ops.mask_bits_size(x.size), np.uint8) if bits and not use_np() else None
        y = ops.bias_act_dropout_forward(x.astype(dt), None if b is None else b.astype(dt), mask_bits=mask, **kw)
        dy = np.random.default_rng(seed + 1).standard_normal(shape).astype(dt)
        gb = np.zeros(shape[-1:], dt)
        dx = ops.bias_act_dropout_backward(dy, y, grad_bias=gb if bias else None, mask_bits=mask, **kw)
        return y, dx, gb

    res = _same_refusal(run, run)
    if res is not None:
        for name, got, ref in zip(("y", "dx", "dbias"), *res):
            _close(got, ref, name, rtol=1e-5)


@PROPERTY
@given(seed=seeds, N=st.integers(0, 12), K=st.integers(1, 12), scale=st.sampled_from([1.0, 30.0, 1e3]),
       reduction=st.sampled_from(["mean", "sum"]), layout=layouts)
def test_softmax_cross_entropy(seed, N, K, scale, reduction, layout):
    rng = np.random.default_rng(seed)
    logits = _f32(rng, (N, K), layout) * np.float32(scale)
    labels = rng.integers(0, K, N)
    loss, grad = ops.softmax_cross_entropy(logits, labels, reduction=reduction)
    with use_backend("numpy"):
        rloss, rgrad = ops.softmax_cross_entropy(logits.astype(np.float64), labels, reduction=reduction)
    if N == 0 and reduction == "mean":
        assert np.isnan(loss) and np.isnan(rloss)
    else:
        _close(np.float64(loss), rloss, "loss", rtol=1e-5)
    _close(grad, rgrad, "grad", rtol=1e-5)


# ---------------------------------------------------------------- optimizers and norms

steps = st.fixed_dictionaries(dict(lr=st.floats(0.0, 1.0), wd=st.sampled_from([0.0, 0.01, 0.5]),
                                   scale=st.sampled_from([1.0, 0.3]), n=st.integers(0, 70)))


def _opt_case(rng, n, *names):
    arrays = {name: rng.standard_normal(n).astype(np.float32) for name in names}
    for name in names:
        if name in ("exp_avg_sq", "max_exp_avg_sq", "square_avg", "state_sum"):
            arrays[name] = np.abs(arrays[name])
    return arrays


def _compare_step(fn, arrays, **kw):
    """One update on float32 buffers against the twin's in float64: each buffer's change to within
    a small part of the largest change (a float32 update rounds its terms; bias corrections of
    early steps magnify them), its value to float32's precision."""
    ours = {k: v.copy() for k, v in arrays.items()}
    fn(**ours, **kw)
    ref = {k: v.astype(np.float64) for k, v in arrays.items()}
    with use_backend("numpy"):
        fn(**ref, **kw)
    for k, start in arrays.items():
        change = np.abs(ref[k] - start)
        largest = float(change.max()) if change.size else 0.0
        size = float(np.abs(ref[k]).max()) if change.size else 0.0
        assert_close(ours[k], ref[k], rtol=0, atol=1e-4 * largest + 1e-6 * size + 1e-30, name=k)


@PROPERTY
@given(seed=seeds, s=steps, momentum=st.sampled_from([0.0, 0.9]), dampening=st.sampled_from([0.0, 0.3]),
       nesterov=st.booleans(), first=st.booleans())
def test_sgd_step(seed, s, momentum, dampening, nesterov, first):
    nesterov = nesterov and momentum > 0 and dampening == 0
    a = _opt_case(np.random.default_rng(seed), s["n"], "param", "grad", "momentum_buffer")
    _compare_step(ops.sgd_step, a, lr=s["lr"], momentum=momentum, dampening=dampening, weight_decay=s["wd"],
                  nesterov=nesterov, first_step=first, grad_scale=s["scale"])


@PROPERTY
@given(seed=seeds, s=steps, amsgrad=st.booleans(), decoupled=st.booleans(), step=st.integers(1, 1000),
       betas=st.tuples(st.floats(0.0, 0.99), st.floats(0.0, 0.999)))
def test_adam_step(seed, s, amsgrad, decoupled, step, betas):
    a = _opt_case(np.random.default_rng(seed), s["n"], "param", "grad", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _compare_step(ops.adam_step, a, lr=s["lr"], beta1=betas[0], beta2=betas[1], weight_decay=s["wd"],
                  decoupled=decoupled, amsgrad=amsgrad, step=step, grad_scale=s["scale"])


@PROPERTY
@given(seed=seeds, s=steps, step=st.integers(1, 100), lr_decay=st.sampled_from([0.0, 0.1]))
def test_adagrad_step(seed, s, step, lr_decay):
    a = _opt_case(np.random.default_rng(seed), s["n"], "param", "grad", "state_sum")
    _compare_step(ops.adagrad_step, a, lr=s["lr"], step=step, lr_decay=lr_decay, weight_decay=s["wd"],
                  grad_scale=s["scale"])


@PROPERTY
@given(seed=seeds, s=steps, centered=st.booleans(), momentum=st.sampled_from([0.0, 0.5]),
       alpha=st.floats(0.5, 1.0))
def test_rmsprop_step(seed, s, centered, momentum, alpha):
    a = _opt_case(np.random.default_rng(seed), s["n"], "param", "grad", "square_avg", "grad_avg",
                  "momentum_buffer")
    # centered: the variance square_avg - grad_avg**2 stays well above 0 (as it does when alpha is
    # near 1); near 0 it is a difference of nearly equal numbers, whose float32 rounding any
    # implementation (torch's too) turns into a square root of a negative number
    a["grad_avg"] *= 0.1
    a["square_avg"] += 0.1
    _compare_step(ops.rmsprop_step, a, lr=s["lr"], alpha=alpha, weight_decay=s["wd"], momentum=momentum,
                  centered=centered, grad_scale=s["scale"])


@PROPERTY
@given(seed=seeds, n=st.integers(0, 70), decay=st.floats(0.0, 1.0))
def test_ema_update(seed, n, decay):
    rng = np.random.default_rng(seed)
    a = {"avg": rng.standard_normal(n).astype(np.float32), "param": rng.standard_normal(n).astype(np.float32)}
    _compare_step(ops.ema_update, a, decay=decay)


@PROPERTY
@given(seed=seeds, sizes=st.lists(st.integers(0, 50), max_size=4), norm_type=st.sampled_from([1.0, 2.0, 3.5,
                                                                                              float("inf")]),
       specials=st.booleans(), factor=st.floats(-2.0, 2.0), clip=st.floats(0.0, 2.0))
def test_norms_scale_clamp_and_count(seed, sizes, norm_type, specials, factor, clip):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    if specials:
        for a in arrays:
            a[rng.random(a.shape) < 0.1] = np.inf
            a[rng.random(a.shape) < 0.1] = np.nan
    with use_backend("numpy"):
        rnorm = ops.global_norm([a.astype(np.float64) for a in arrays], norm_type)
        rcount = ops.count_nonfinite(arrays)
    _close(np.float64(ops.global_norm(arrays, norm_type)), rnorm, "norm", rtol=1e-6)
    assert ops.count_nonfinite(arrays) == rcount
    for fn, arg in ((ops.scale_, factor), (ops.clamp_, clip)):
        arg = float(np.float32(arg))  # the kernels take float32 factors and bounds (a tiny one is 0)
        ours = [a.copy() for a in arrays]
        ref = [a.astype(np.float64) for a in arrays]
        fn(ours, arg)
        with use_backend("numpy"), np.errstate(invalid="ignore"):  # inf * 0 is NaN, as in the kernels
            fn(ref, arg)
        for o, r in zip(ours, ref):
            _close(o, r, fn.__name__, rtol=1e-6)
