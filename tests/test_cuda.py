"""CUDA kernels (fusetrain._cuda) against the CPU kernels on the same inputs: optimizers, norms,
batch/layer norm, dropout epilogue, the losses, convolution helpers and pooling; bitwise-identical
dropout masks; deterministic reductions and gathers; short training runs (MLP, CNNs) on the GPU.
GPU tests are marked ``cuda`` and skip without a GPU."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fusetrain
from fusetrain import _core, backend, nn, ops
from test_conv import CONV1D_CASES, CONV2D_CASES
from test_pooling import ADAPTIVE2D, AVG2D, MAX2D
from testutils import assert_close

HAVE_GPU = fusetrain.cuda_available()
gpu = pytest.mark.skipif(not HAVE_GPU, reason="needs a CUDA GPU, CuPy and fusetrain._cuda")

CUDA_FUNCTIONS = (
    "sgd_step", "adagrad_step", "rmsprop_step", "adam_step", "ema_update", "pow_sum", "scale_inplace",
    "clamp_inplace", "count_nonfinite", "batchnorm_forward_train", "batchnorm_forward_eval",
    "batchnorm_backward", "layernorm_forward", "layernorm_backward", "bias_act_dropout_forward",
    "bias_act_dropout_backward", "dropout_mask", "philox4x32_10", "softmax_cross_entropy", "mse_loss", "im2col2d", "col2im2d",
    "cn_to_nc", "nc_to_cn", "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward",
    "avg_pool2d_backward", "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward",
)


class _DeviceArray:
    """Stands for a CUDA array on a machine without a GPU: a __cuda_array_interface__ with no memory
    behind it, enough for the checks _cuda makes on the host before any launch."""

    def __init__(self, size, ptr=16, typestr="<f4"):
        self.__cuda_array_interface__ = {"shape": (size,), "typestr": typestr, "data": (ptr, False),
                                         "strides": None, "version": 3}


def _d(size, ptr=16, typestr="<f4"):
    return _DeviceArray(size, 0 if size == 0 else ptr, typestr)


# ---------------------------------------------------------------- without a GPU

def test_cuda_module_imports_without_touching_the_driver():
    """When built, _cuda imports on a machine without a GPU; importing loads no CUDA driver."""
    if backend._cuda is None:
        pytest.skip("fusetrain was built without its CUDA module")
    missing = [f for f in CUDA_FUNCTIONS if not hasattr(backend._cuda, f)]
    assert not missing, f"_cuda lacks {missing}"
    if not os.path.exists("/proc/self/maps"):
        pytest.skip("needs /proc to inspect the loaded libraries")
    code = ("import fusetrain, fusetrain._cuda\n"
            "maps = open('/proc/self/maps').read()\n"
            "print('libcuda.so' in maps)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False", "importing fusetrain loaded the CUDA driver"


def test_cuda_host_checks_raise_before_any_launch():
    """Bad sizes and arguments are refused on the host (ValueError), so they need no GPU."""
    cu = backend._cuda
    if cu is None:
        pytest.skip("fusetrain was built without its CUDA module")
    with pytest.raises(ValueError, match="param: the sizes .* include a negative one"):
        bad = _d(1)
        bad.__cuda_array_interface__["shape"] = (-1,)
        cu.sgd_step(bad, bad, None, 0.1, 0.0, 0.0, 0.0, False, False, 1.0)
    with pytest.raises(ValueError, match="param must be a device pointer"):
        cu.adam_step(_d(5, ptr=0), _d(5), _d(5), _d(5), None, 1e-3, 0.9, 0.999, 1e-8, 0.0, True, 1, 1.0)
    with pytest.raises(ValueError, match="step must be >= 1"):
        cu.adam_step(_d(1), _d(1), _d(1), _d(1), None, 1e-3, 0.9, 0.999, 1e-8, 0.0, True, 0, 1.0)
    with pytest.raises(ValueError, match="norm_type must be > 0"):
        cu.pow_sum(_d(4), -1.0)
    with pytest.raises(ValueError, match="multiple of 4"):
        cu.dropout_mask(_d(8, typestr="|u1"), 0.5, 1, 2)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        cu.bias_act_dropout_forward(_d(6), None, _d(6), 2, 3, 0, 0.0, 1.0, 1, 0, None)
    with pytest.raises(ValueError, match="act code"):
        cu.bias_act_dropout_backward(_d(6), _d(6), _d(6), None, 2, 3, 9, 0.0, 0.0, 1, 0, None)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        cu.batchnorm_forward_train(_d(3), None, None, _d(3), _d(3), _d(3), None, None, 1, 3, 1, 1e-5, 0.1, False,
                                   0.0, 0, 0)
    with pytest.raises(ValueError, match="needs relu"):
        cu.batchnorm_forward_train(_d(12), None, None, _d(12), _d(3), _d(3), None, None, 4, 3, 1, 1e-5, 0.1, False,
                                   0.5, 0, 0)
    with pytest.raises(ValueError, match="K >= 1"):
        cu.softmax_cross_entropy(_d(0), _d(3, typestr="<i8"), None, 3, 0, 1.0)
    with pytest.raises(ValueError, match="target has 3 elements, expected 4"):
        cu.mse_loss(_d(4), _d(3), None, 0.5)
    # An array that is no CUDA array, or of another dtype, is refused by name.
    with pytest.raises(ValueError, match="grad must be a CUDA array"):
        cu.sgd_step(_d(4), np.zeros(4, np.float32), None, 0.1, 0.0, 0.0, 0.0, False, False, 1.0)
    with pytest.raises(ValueError, match="grad has typestr <f8, expected <f4"):
        cu.sgd_step(_d(4), _d(4, typestr="<f8"), None, 0.1, 0.0, 0.0, 0.0, False, False, 1.0)
    # Empty inputs are valid and launch nothing (so they also run without a GPU).
    assert cu.pow_sum(_d(0), 2.0) == 0.0
    assert cu.count_nonfinite(_d(0)) == 0
    cu.adam_step(_d(0), _d(0), _d(0), _d(0), None, 1e-3, 0.9, 0.999, 1e-8, 0.0, True, 1, 1.0)


def test_cuda_conv_and_pool_host_checks_raise_before_any_launch():
    """The convolution and pooling launchers check geometry, sizes and pointers on the host."""
    cu = backend._cuda
    if cu is None:
        pytest.skip("fusetrain was built without its CUDA module")
    geom = (5, 5, 3, 3, 1, 1, 1, 1, 1, 1)  # H, W, KH, KW, SH, SW, PH, PW, DH, DW (a 5x5 output)
    with pytest.raises(ValueError, match="larger than the padded input"):
        cu.im2col2d(_d(25), _d(1), 1, 1, 5, 5, 7, 7, 1, 1, 0, 0, 1, 1)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        cu.max_pool2d_forward(_d(16), _d(4), _d(4, typestr="<i4"), 1, 4, 4, 2, 2, 0, 2, 0, 0, 1, 1)
    with pytest.raises(ValueError, match="dilation must be >= 1"):
        cu.col2im2d(_d(225), _d(25), 1, 1, 5, 5, 3, 3, 1, 1, 1, 1, 0, 1)
    with pytest.raises(ValueError, match="col must be a device pointer"):
        cu.col2im2d(_d(225, ptr=0), _d(25), 1, 1, *geom)
    with pytest.raises(ValueError, match="grad_input must be a device pointer"):
        cu.max_pool2d_backward(_d(50), _d(50, typestr="<i4"), _d(50, ptr=0), 2, *geom)
    with pytest.raises(ValueError, match="im2col sizes must be >= 0"):
        cu.im2col2d(_d(25), _d(225), -1, 1, *geom)
    with pytest.raises(ValueError, match="nc_to_cn sizes must be >= 0"):
        cu.nc_to_cn(_d(0), _d(0), None, 2, -3, 4)
    with pytest.raises(ValueError, match="plane count must be >= 0"):
        cu.avg_pool2d_forward(_d(0), _d(0), -1, 5, 5, 3, 3, 1, 1, 1, 1, True)
    with pytest.raises(ValueError, match="output size must be >= 1"):
        cu.adaptive_avg_pool2d_forward(_d(16), _d(0), 1, 4, 4, 0, 2)
    with pytest.raises(ValueError, match="fewer than 2\\*\\*31"):
        cu.max_pool2d_forward(_d(16), _d(16), _d(16, typestr="<i4"), 1, 1 << 16, 1 << 16, 1, 1, 1, 1, 0, 0, 1, 1)
    # Empty inputs are valid and launch nothing.
    cu.im2col2d(_d(0), _d(0), 0, 3, *geom)
    cu.col2im2d(_d(0), _d(0), 0, 3, *geom)
    cu.cn_to_nc(_d(0), None, _d(0), 0, 4, 9)
    cu.nc_to_cn(_d(0), _d(0), _d(4), 0, 4, 9)  # a bias gradient with nothing to sum stays as it is
    cu.max_pool2d_forward(_d(0), _d(0), _d(0, typestr="<i4"), 0, *geom)
    cu.max_pool2d_backward(_d(0), _d(0, typestr="<i4"), _d(0), 0, *geom)
    cu.avg_pool2d_backward(_d(0), _d(0), 0, 5, 5, 3, 3, 1, 1, 1, 1, False)
    cu.adaptive_avg_pool2d_backward(_d(0), _d(0), 0, 5, 5, 2, 2)


# ---------------------------------------------------------------- GPU helpers

@pytest.fixture
def cp():
    return backend.cupy_module()


def _rand(shape, seed, scale=1.0, shift=0.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale + shift).astype(np.float32)


def _host(a):
    return None if a is None else backend.cupy_module().asnumpy(a)


def _misaligned(cp, a):
    """A copy of a on the GPU whose data pointer is 4 bytes past a 16-byte boundary (scalar paths)."""
    buf = cp.empty(a.size + 1, dtype=a.dtype)
    view = buf[1:1 + a.size].reshape(a.shape)
    view[...] = cp.asarray(a)
    return view


SIZES = [1, 3, 4, 13, 4099, 65537]


# ---------------------------------------------------------------- optimizers

OPT_CASES = {
    "sgd": (1, dict(lr=0.1, weight_decay=0.01)),
    "sgd_momentum": (1, dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    "sgd_nesterov": (1, dict(lr=0.1, momentum=0.9, nesterov=True)),
    "adagrad": (1, dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, eps=1e-10)),
    "rmsprop": (1, dict(lr=0.01, alpha=0.9, eps=1e-8, weight_decay=0.01)),
    "rmsprop_centered_momentum": (3, dict(lr=0.01, alpha=0.9, eps=1e-8, momentum=0.8, centered=True)),
    "adam": (3, dict(lr=1e-2, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.01, decoupled=False)),
    "adamw_amsgrad": (3, dict(lr=1e-2, beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.1, decoupled=True,
                              amsgrad=True)),
}


def _opt_step(kind, kw, param, grad, states, step, grad_scale):
    kw = dict(kw, grad_scale=grad_scale)
    if kind.startswith("sgd"):
        buf = states[0] if kw.get("momentum") else None
        ops.sgd_step(param, grad, buf, first_step=step == 1, **kw)
    elif kind == "adagrad":
        ops.adagrad_step(param, grad, states[0], step=step, **kw)
    elif kind.startswith("rmsprop"):
        ops.rmsprop_step(param, grad, states[0], states[1], states[2], **kw)
    else:
        ops.adam_step(param, grad, states[0], states[1], states[2], step=step, **kw)


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("kind", list(OPT_CASES))
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("aligned", [True, False])
def test_optimizer_steps_match_cpu(cp, kind, n, aligned):
    nstates, kw = OPT_CASES[kind]
    p0 = _rand(n, 1)
    # State 0 (square sums, exp_avg) >= 1 and the others small, so a centered RMSprop's
    # square_avg - grad_avg^2 stays positive.
    states0 = [np.abs(_rand(n, 10 + i)) * (1.0 if i == 0 else 0.1) + (1.0 if i == 0 else 0.0)
               for i in range(nstates)]
    p_cpu, s_cpu = p0.copy(), [s.copy() for s in states0]
    put = (lambda a: _misaligned(cp, a)) if not aligned else cp.asarray
    p_gpu, s_gpu = put(p0), [put(s) for s in states0]
    for step in (1, 2, 3):
        g = _rand(n, 100 + step)
        scale = 0.5 if step == 2 else 1.0
        _opt_step(kind, kw, p_cpu, g, s_cpu + [None] * (3 - nstates), step, scale)
        _opt_step(kind, kw, p_gpu, put(g), s_gpu + [None] * (3 - nstates), step, scale)
    assert_close(_host(p_gpu), p_cpu, rtol=2e-6, atol=5e-7, name=f"{kind} param")
    for i, (a, b) in enumerate(zip(s_gpu, s_cpu)):
        assert_close(_host(a), b, rtol=2e-6, atol=5e-7, name=f"{kind} state {i}")


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("n", SIZES)
def test_ema_update_matches_cpu(cp, n):
    avg, p = _rand(n, 1), _rand(n, 2)
    avg_gpu = cp.asarray(avg)
    ops.ema_update(avg, p, 0.9)
    ops.ema_update(avg_gpu, cp.asarray(p), 0.9)
    assert_close(_host(avg_gpu), avg, rtol=1e-6, atol=1e-7, name="ema")


# ---------------------------------------------------------------- norms and clipping helpers

@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
def test_global_norm_matches_cpu_and_is_deterministic(cp, norm_type):
    arrays = [_rand(n, i, scale=3.0) for i, n in enumerate([1, 7, 4099, 278011, 1 << 20])]
    on_gpu = [cp.asarray(a) for a in arrays]
    expect = ops.global_norm(arrays, norm_type)
    got = [ops.global_norm(on_gpu, norm_type) for _ in range(3)]
    assert got[0] == got[1] == got[2], f"GPU norm differs between runs: {got}"
    assert abs(got[0] - expect) <= 1e-9 * expect, f"{got[0]} vs CPU {expect}"
    as64 = np.concatenate([a.astype(np.float64) for a in arrays])
    ref = np.max(np.abs(as64)) if np.isinf(norm_type) else np.sum(np.abs(as64) ** norm_type) ** (1 / norm_type)
    assert abs(got[0] - ref) <= 1e-9 * ref


@gpu
@pytest.mark.cuda
def test_inf_norm_propagates_nan(cp):
    x = _rand(1001, 3)
    x[517] = np.nan
    assert np.isnan(ops.global_norm([cp.asarray(x)], float("inf")))
    assert np.isnan(ops.global_norm([cp.asarray(x)], 2.0))


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("n", SIZES)
def test_scale_clamp_count_match_cpu_exactly(cp, n):
    x = _rand(n, 4, scale=2.0)
    if n > 3:
        x[1], x[2] = np.inf, np.nan
    for aligned in (True, False):
        a, b = x.copy(), cp.asarray(x) if aligned else _misaligned(cp, x)
        assert ops.count_nonfinite([b]) == ops.count_nonfinite([a])
        ops.scale_([a], 0.37)
        ops.scale_([b], 0.37)
        np.testing.assert_array_equal(_host(b), a)
        ops.clamp_([a], 0.5)
        ops.clamp_([b], 0.5)
        np.testing.assert_array_equal(_host(b), a)


# ---------------------------------------------------------------- batch norm

# S % 4 == 0 shapes take the float4 channel-plane path; the others the scalar one.
BN_SHAPES = [(7, 5), (64, 12), (5, 3, 11), (2, 5, 8), (4, 8, 3, 3), (3, 6, 4, 4), (2, 4, 17, 13)]


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("relu,dropout_p", [(False, 0.0), (True, 0.0), (True, 0.3)])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_train_matches_cpu(cp, shape, relu, dropout_p, affine):
    C = shape[1]
    x = _rand(shape, 1, scale=2.0, shift=3.0)
    w = _rand(C, 2) if affine else None
    b = _rand(C, 3) if affine else None
    rm, rv = _rand(C, 4), np.abs(_rand(C, 5)) + 0.5
    seed, offset = 987654321, 4 * 12345
    dy = _rand(shape, 6)
    g = lambda a: None if a is None else cp.asarray(a)  # noqa: E731
    rm_g, rv_g = g(rm), g(rv)
    kw = dict(training=True, momentum=0.1, eps=1e-5, relu=relu, dropout_p=dropout_p, seed=seed, offset=offset)
    y, mean, invstd = ops.batchnorm_forward(x, w, b, rm, rv, **kw)
    yg, meang, invstdg = ops.batchnorm_forward(g(x), g(w), g(b), rm_g, rv_g, **kw)
    assert_close(_host(meang), mean, rtol=1e-6, atol=1e-6, name="mean")
    assert_close(_host(invstdg), invstd, rtol=1e-6, atol=1e-6, name="invstd")
    assert_close(_host(rm_g), rm, rtol=1e-6, atol=1e-6, name="running_mean")
    assert_close(_host(rv_g), rv, rtol=1e-6, atol=1e-6, name="running_var")
    assert_close(_host(yg), y, rtol=1e-5, atol=1e-5, name="y")
    if dropout_p:
        dropped = ~ops.dropout_mask(x.size, dropout_p, seed, offset).reshape(shape)
        assert np.all(_host(yg)[dropped] == 0), "GPU kept elements the CPU mask drops"
    dw = np.full(C, 0.25, np.float32) if affine else None
    db = np.full(C, -0.5, np.float32) if affine else None
    dwg, dbg = g(dw), g(db)
    bkw = dict(training=True, relu=relu, dropout_p=dropout_p)
    dx = ops.batchnorm_backward(dy, x, y, w, mean, invstd, grad_weight=dw, grad_bias=db, **bkw)
    dxg = ops.batchnorm_backward(g(dy), g(x), yg, g(w), meang, invstdg, grad_weight=dwg, grad_bias=dbg, **bkw)
    assert_close(_host(dxg), dx, rtol=1e-4, atol=1e-5, name="dx")
    if affine:
        assert_close(_host(dwg), dw, rtol=1e-5, atol=1e-5, name="dw (accumulated)")
        assert_close(_host(dbg), db, rtol=1e-5, atol=1e-5, name="db (accumulated)")


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("relu", [False, True])
def test_batchnorm_eval_matches_cpu(cp, shape, relu):
    C = shape[1]
    x, w, b = _rand(shape, 1), _rand(C, 2), _rand(C, 3)
    rm, rv = _rand(C, 4), np.abs(_rand(C, 5)) + 0.5
    g = cp.asarray
    y, mean, invstd = ops.batchnorm_forward(x, w, b, rm, rv, training=False, relu=relu)
    yg, meang, invstdg = ops.batchnorm_forward(g(x), g(w), g(b), g(rm), g(rv), training=False, relu=relu)
    assert_close(_host(yg), y, rtol=1e-6, atol=1e-6, name="y")
    assert_close(_host(invstdg), invstd, rtol=1e-6, atol=1e-7, name="invstd")
    dy = _rand(shape, 6)
    dw = np.zeros(C, np.float32)
    dwg = g(dw)
    dx = ops.batchnorm_backward(dy, x, y, w, mean, invstd, training=False, relu=relu, grad_weight=dw)
    dxg = ops.batchnorm_backward(g(dy), g(x), yg, g(w), meang, invstdg, training=False, relu=relu, grad_weight=dwg)
    assert_close(_host(dxg), dx, rtol=1e-5, atol=1e-6, name="dx")
    assert_close(_host(dwg), dw, rtol=1e-5, atol=1e-5, name="dw")


@gpu
@pytest.mark.cuda
def test_batchnorm_param_grads_are_deterministic(cp):
    shape = (64, 16, 9, 9)
    x, dy = cp.asarray(_rand(shape, 1)), cp.asarray(_rand(shape, 2))
    w, b = cp.asarray(_rand(16, 3)), cp.asarray(_rand(16, 4))
    y, mean, invstd = ops.batchnorm_forward(x, w, b, None, None, training=True)
    results = []
    for _ in range(3):
        dw, db = cp.zeros(16, cp.float32), cp.zeros(16, cp.float32)
        dx = ops.batchnorm_backward(dy, x, y, w, mean, invstd, training=True, grad_weight=dw, grad_bias=db)
        results.append((_host(dx), _host(dw), _host(db)))
    for r in results[1:]:
        for a, e in zip(r, results[0]):
            np.testing.assert_array_equal(a, e)


# ---------------------------------------------------------------- layer norm

@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (64, 128), (5, 1000), (9, 3000)])
@pytest.mark.parametrize("affine", [True, False])
def test_layernorm_matches_cpu(cp, shape, affine):
    D = shape[-1]
    x = _rand(shape, 1, scale=2.0, shift=5.0)
    w = _rand(D, 2) if affine else None
    b = _rand(D, 3) if affine else None
    g = lambda a: None if a is None else cp.asarray(a)  # noqa: E731
    y, mean, rstd = ops.layernorm_forward(x, w, b)
    yg, meang, rstdg = ops.layernorm_forward(g(x), g(w), g(b))
    assert_close(_host(meang), mean, rtol=1e-6, atol=1e-6, name="mean")
    assert_close(_host(rstdg), rstd, rtol=1e-6, atol=1e-6, name="rstd")
    assert_close(_host(yg), y, rtol=1e-5, atol=1e-5, name="y")
    dy = _rand(shape, 4)
    dw = np.full(D, 0.5, np.float32) if affine else None
    db = np.full(D, 0.5, np.float32) if affine else None
    dwg, dbg = g(dw), g(db)
    dx = ops.layernorm_backward(dy, x, w, mean, rstd, grad_weight=dw, grad_bias=db)
    dxg = ops.layernorm_backward(g(dy), g(x), g(w), meang, rstdg, grad_weight=dwg, grad_bias=dbg)
    assert_close(_host(dxg), dx, rtol=1e-4, atol=1e-5, name="dx")
    if affine:
        assert_close(_host(dwg), dw, rtol=1e-5, atol=1e-5, name="dw")
        assert_close(_host(dbg), db, rtol=1e-5, atol=1e-5, name="db")


# ---------------------------------------------------------------- Philox, dropout, epilogue

@gpu
@pytest.mark.cuda
def test_philox_blocks_match_cpu():
    from test_dropout import KAT

    rng = np.random.default_rng(0)
    cases = [(ctr, key) for ctr, key, _ in KAT]
    cases += [(tuple(int(v) for v in rng.integers(0, 2**32, 4)), tuple(int(v) for v in rng.integers(0, 2**32, 2)))
              for _ in range(8)]
    for ctr, key in cases:
        assert tuple(backend._cuda.philox4x32_10(*ctr, *key)) == tuple(_core.philox4x32_10(*ctr, *key))
    for ctr, key, expect in KAT:
        assert tuple(backend._cuda.philox4x32_10(*ctr, *key)) == expect


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("n", [1, 3, 4, 5, 1023, 278011])
@pytest.mark.parametrize("seed,offset", [(0, 0), (0x123456789ABCDEF, 4), (2**64 - 1, (1 << 33) + 8)])
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9])
def test_dropout_masks_bitwise_identical_to_cpu(cp, n, seed, offset, p):
    keep = cp.empty(n, dtype=cp.uint8)
    backend._cuda.dropout_mask(keep, p, seed, offset)
    np.testing.assert_array_equal(_host(keep).view(bool), ops.dropout_mask(n, p, seed, offset))
    np.testing.assert_array_equal(_host(ops.dropout_mask(n, p, seed, offset, like=keep)), _host(keep).view(bool))


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("n", [1, 5, 4099])
def test_dropout_forward_backward_bitwise_identical_to_cpu(cp, n):
    x, dy = _rand(n, 1), _rand(n, 2)
    seed, offset = 42, 4 * 1000
    y = ops.dropout_forward(x, 0.4, seed, offset)
    yg = ops.dropout_forward(cp.asarray(x), 0.4, seed, offset)
    np.testing.assert_array_equal(_host(yg), y)
    dx = ops.dropout_backward(dy, 0.4, seed, offset)
    dxg = ops.dropout_backward(cp.asarray(dy), 0.4, seed, offset)
    np.testing.assert_array_equal(_host(dxg), dx)


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("act", list(ops.ACTIVATIONS))
@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (33, 64), (129, 13)])
@pytest.mark.parametrize("p", [0.0, 0.3])
@pytest.mark.parametrize("with_bias", [True, False])
def test_bias_act_dropout_matches_cpu(cp, act, shape, p, with_bias):
    F = shape[-1]
    x, dy = _rand(shape, 1, scale=2.0), _rand(shape, 2)
    bias = _rand(F, 3) if with_bias else None
    kw = dict(act=act, negative_slope=0.05, p=p, seed=7, offset=4 * 77)
    y = ops.bias_act_dropout_forward(x, bias, **kw)
    yg = ops.bias_act_dropout_forward(cp.asarray(x), None if bias is None else cp.asarray(bias), **kw)
    assert_close(_host(yg), y, rtol=2e-6, atol=1e-6, name="y")
    if p:
        dropped = ~ops.dropout_mask(x.size, p, 7, 4 * 77).reshape(shape)
        assert np.all(_host(yg)[dropped] == 0)
    gb = np.full(F, 1.5, np.float32) if with_bias else None
    gbg = None if gb is None else cp.asarray(gb)
    dx = ops.bias_act_dropout_backward(dy, y, grad_bias=gb, **kw)
    # The GPU backward runs on its own forward output, as in training.
    dxg = ops.bias_act_dropout_backward(cp.asarray(dy), yg, grad_bias=gbg, **kw)
    assert_close(_host(dxg), dx, rtol=1e-5, atol=1e-6, name="dx")
    if with_bias:
        assert_close(_host(gbg), gb, rtol=1e-5, atol=1e-5, name="grad_bias (accumulated)")


# ---------------------------------------------------------------- loss

@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("N,K", [(1, 1), (1, 10), (37, 10), (256, 1000), (3, 5000)])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_softmax_cross_entropy_matches_cpu(cp, N, K, reduction):
    logits = _rand((N, K), 1, scale=5.0, shift=100.0)
    labels = np.random.default_rng(2).integers(0, K, N).astype(np.int64)
    loss, grad = ops.softmax_cross_entropy(logits, labels, reduction=reduction)
    lossg, gradg = ops.softmax_cross_entropy(cp.asarray(logits), cp.asarray(labels), reduction=reduction)
    assert abs(lossg - loss) <= 1e-9 * max(1.0, abs(loss)), f"{lossg} vs CPU {loss}"
    assert_close(_host(gradg), grad, rtol=1e-6, atol=1e-8, name="dlogits")


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("n", [1, 5, 4099, 1 << 20])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_loss_matches_cpu(cp, n, reduction):
    pred, target = _rand(n, 1, scale=3.0), _rand(n, 2)
    loss, grad = ops.mse_loss(pred, target, reduction=reduction)
    lossg, gradg = ops.mse_loss(cp.asarray(pred), cp.asarray(target), reduction=reduction)
    assert abs(lossg - loss) <= 1e-12 * max(1.0, abs(loss)), f"{lossg} vs CPU {loss}"
    np.testing.assert_array_equal(_host(gradg), grad)  # one shared element body (fusetrain/loss.h)


@gpu
@pytest.mark.cuda
def test_mixed_devices_are_refused(cp):
    p = cp.asarray(_rand(8, 1))
    with pytest.raises(ValueError, match="same device"):
        ops.sgd_step(p, _rand(8, 2), lr=0.1)


# ---------------------------------------------------------------- a short training run

def _train(device, X, Y, steps=30, batch=64, model_fn=None, seed=3, lr=5e-3):
    """Loss per step of AdamW (clip 1.0) training on device ("cpu" or "cuda"); the model is the
    small MLP below unless model_fn builds another. Same seed, same init and dropout masks."""
    from fusetrain import nn, optim

    fusetrain.manual_seed(seed)
    if model_fn is None:
        model = nn.Sequential(nn.Linear(64, 48), nn.BatchNorm1d(48), nn.ReLU(), nn.Dropout(0.2), nn.Linear(48, 10))
    else:
        model = model_fn()
    xp = np
    if device == "cuda":
        model.to("cuda")
        xp = backend.cupy_module()
    opt = optim.AdamW(model.parameters(), lr=lr, max_grad_norm=1.0)
    loss_fn = nn.CrossEntropyLoss()
    Xd, Yd = xp.asarray(X), xp.asarray(Y)
    losses = []
    for step in range(steps):
        lo = (step * batch) % (len(X) - batch)
        opt.zero_grad()
        loss = loss_fn(model(Xd[lo:lo + batch]), Yd[lo:lo + batch])
        model.backward(loss_fn.backward())
        opt.step()
        losses.append(loss)
    return np.array(losses)


@gpu
@pytest.mark.cuda
def test_training_run_on_gpu_tracks_cpu():
    """Same seed on both devices: same init, same dropout masks, so the loss curves agree (up to
    cuBLAS vs OpenBLAS rounding, which grows slowly over the steps)."""
    datasets = pytest.importorskip("sklearn.datasets")
    X, Y = datasets.load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    Y = Y.astype(np.int64)
    cpu = _train("cpu", X, Y)
    gpu_losses = _train("cuda", X, Y)
    assert_close(gpu_losses[:10], cpu[:10], rtol=1e-3, atol=1e-4, name="first losses")
    assert_close(gpu_losses, cpu, rtol=5e-3, atol=1e-3, name="loss curve")
    assert gpu_losses[-5:].mean() < 0.5 * gpu_losses[:5].mean()  # it actually trained


# ---------------------------------------------------------------- convolution and pooling

def _conv_geom(case):
    """(N, C, H, W, OC, (KH, KW), stride, padding, dilation, groups) of a test_conv CONV2D_CASES entry."""
    N, C, H, W, OC, k, s, p, d, g = case
    ints = ops._check.ints
    return N, C, H, W, OC, ints(k, 2, "k", 1), ints(s, 2, "s", 1), ints(p, 2, "p", 0), ints(d, 2, "d", 1), g


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("case", CONV2D_CASES)
def test_im2col_col2im_match_cpu_bitwise(cp, case):
    """im2col is a copy and col2im sums each pixel's taps in the CPU's (kh, kw) order from 0, so
    both give the CPU kernels' bits; col2im is a gather, so two runs are bitwise equal too."""
    N, C, H, W, _, (KH, KW), s, p, d, _ = _conv_geom(case)
    geom = (H, W, KH, KW, *s, *p, *d)
    OH, OW = (ops.window.window_out_size(n, k, si, pi, di) for n, k, si, pi, di in zip((H, W), (KH, KW), s, p, d))
    x = _rand((N, C, H, W), 1)
    col = np.empty((C * KH * KW, N * OH * OW), np.float32)
    _core.im2col2d(x, col, N, C, *geom)
    colg = cp.empty(col.shape, cp.float32)
    backend._cuda.im2col2d(cp.asarray(x), colg, N, C, *geom)
    np.testing.assert_array_equal(_host(colg), col)
    c = _rand(col.shape, 2)
    dx = np.empty(x.shape, np.float32)
    _core.col2im2d(c, dx, N, C, *geom)
    runs = []
    for _ in range(2):
        dxg = cp.full(x.shape, np.nan, cp.float32)  # col2im overwrites every element
        backend._cuda.col2im2d(cp.asarray(c), dxg, N, C, *geom)
        runs.append(_host(dxg))
    np.testing.assert_array_equal(runs[0], dx)
    np.testing.assert_array_equal(runs[1], runs[0])


# (N, C, S): S == 1 takes the column-tile bias sums, S % 4 == 0 the float4 channel planes.
LAYOUT_SHAPES = [(1, 1, 1), (3, 5, 7), (2, 4, 1), (7, 3, 1), (33, 8, 1), (4, 8, 16), (5, 6, 12), (2, 3, 1000),
                 (0, 3, 4), (3, 0, 5), (3, 2, 0)]


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("shape", LAYOUT_SHAPES)
@pytest.mark.parametrize("aligned", [True, False])
def test_layout_moves_match_cpu(cp, shape, aligned):
    N, C, S = shape
    put = cp.asarray if aligned else (lambda a: _misaligned(cp, a))
    src, bias = _rand((C, N * S), 1), _rand(C, 2)
    for b in (bias, None):
        dst = np.empty((N, C, S), np.float32)
        _core.cn_to_nc(src, b, dst, N, C, S)
        dstg = put(np.zeros((N, C, S), np.float32))
        backend._cuda.cn_to_nc(put(src), None if b is None else put(b), dstg, N, C, S)
        np.testing.assert_array_equal(_host(dstg), dst)
    g = _rand((N, C, S), 3, scale=2.0, shift=1.0)
    db = np.full(C, 0.5, np.float32)
    for with_bias in (True, False):
        dst = np.empty((C, N * S), np.float32)
        dbc = db.copy()
        _core.nc_to_cn(g, dst, dbc if with_bias else None, N, C, S)
        runs = []
        for _ in range(2):
            dstg = put(np.zeros((C, N * S), np.float32))
            dbg = put(db) if with_bias else None
            backend._cuda.nc_to_cn(put(g), dstg, dbg, N, C, S)
            np.testing.assert_array_equal(_host(dstg), dst)
            runs.append(_host(dbg))
        if with_bias:
            assert_close(runs[0], dbc, rtol=1e-6, atol=1e-6, name="grad_bias (accumulated)")
            np.testing.assert_array_equal(runs[1], runs[0])


def _run_conv2d_op(case, xp, bias):
    """(y, dx, dw, db) of ops.conv2d_forward/backward on xp (numpy or cupy) arrays, as host arrays;
    the parameter gradients accumulate onto 0.5 and -0.25."""
    N, C, H, W, OC, (KH, KW), s, p, d, g = _conv_geom(case)
    x, w = xp.asarray(_rand((N, C, H, W), 1)), xp.asarray(_rand((OC, C // g, KH, KW), 2))
    b = xp.asarray(_rand(OC, 4)) if bias else None
    gw = xp.full(w.shape, 0.5, np.float32)
    gb = xp.full(OC, -0.25, np.float32) if bias else None
    kw = dict(stride=s, padding=p, dilation=d, groups=g)
    y, col = ops.conv2d_forward(x, w, b, **kw)
    dy = xp.asarray(_rand(tuple(y.shape), 3))
    dx = ops.conv2d_backward(dy, col, w, x.shape, grad_weight=gw, grad_bias=gb, **kw)
    host = (lambda a: a if a is None or xp is np else _host(a))  # noqa: E731
    return host(y), host(dx), host(gw), host(gb)


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("case", CONV2D_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_op_matches_cpu(cp, case, bias):
    """im2col + cuBLAS + layout kernels against the CPU (direct or im2col + BLAS) convolution."""
    N, C, H, W, OC, (KH, KW), s, p, d, g = _conv_geom(case)
    y, dx, dw, db = _run_conv2d_op(case, np, bias)
    yg, dxg, dwg, dbg = _run_conv2d_op(case, cp, bias)
    # twice test_conv's tolerance against the float64 twin: each side may be off by that much
    atol = 2 * max(1e-5, 3e-7 * max(C // g, OC // g) * KH * KW)
    assert_close(yg, y, rtol=2e-5, atol=atol, name="y")
    assert_close(dxg, dx, rtol=2e-5, atol=atol, name="dx")
    assert_close(dwg, dw, rtol=2e-5, atol=2e-4, name="dw")
    if bias:
        assert_close(dbg, db, rtol=2e-5, atol=2e-4, name="db")


@gpu
@pytest.mark.cuda
def test_conv_buffer_shapes_follow_the_device(cp):
    # stride 1, one group: the direct kernels on the CPU, im2col on the GPU
    x_shape, w_shape = (2, 3, 7, 9), (5, 3, 3, 3)
    col, work = ops.conv2d_buffer_shapes(x_shape, w_shape, padding=1)
    assert work is None and col[0] == 2
    assert ops.conv2d_buffer_shapes(x_shape, w_shape, padding=1, like=cp.empty(1, cp.float32)) == \
        ((3 * 9, 2 * 7 * 9), (5, 2 * 7 * 9))
    assert ops.conv1d_buffer_shapes((2, 3, 11), (4, 3, 3), like=cp.empty(1, cp.float32)) == \
        ((3 * 3, 2 * 9), (4, 2 * 9))


def _pool_pair(cp, x, fwd, bwd, use_indices=False):
    """(y, indices or None, dx) of a pooling op's forward and backward on the CPU and on the GPU,
    as host arrays. fwd(x) returns y, or (y, indices); bwd(dy, x_shape) or bwd(dy, indices, x_shape)."""
    out = []
    for xp in (np, cp):
        res = fwd(xp.asarray(x))
        y, idx = res if use_indices else (res, None)
        dy = xp.asarray(_rand(tuple(y.shape), 7))
        dx = bwd(dy, idx, x.shape) if use_indices else bwd(dy, x.shape)
        host = (lambda a: a if a is None or xp is np else _host(a))  # noqa: E731
        out.append((host(y), host(idx), host(dx)))
    return out


# (shape, kernel, stride, padding, dilation): test_pool's cases plus dilation/overlap corners, and
# one whose windows all fall in the padding (index -1: their gradient goes nowhere).
MAXPOOL_GPU_CASES = [((3, 5, 11, 7), k, s, p, d) for k, s, p, d in MAX2D] + [
    ((2, 3, 13, 17), 3, 1, 1, 2), ((1, 2, 9, 4), (4, 1), (1, 1), (2, 0), (3, 1)), ((2, 3, 1, 6), 2, 1, (2, 0), (3, 1)),
    ((4, 1, 1, 1), 1, 1, 0, 1)]


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("shape,k,s,p,d", MAXPOOL_GPU_CASES)
def test_max_pool2d_matches_cpu_bitwise(cp, shape, k, s, p, d):
    """Same scan as the CPU (NaN wins, first tie, -inf padding) and dx summed in the CPU's order."""
    x = _rand(shape, 1)
    x.reshape(-1)[::7] = x.reshape(-1)[1]  # ties
    if x.size > 20:
        x.reshape(-1)[5] = np.nan
    fwd = lambda a: ops.max_pool2d_forward(a, k, s, p, d)  # noqa: E731
    bwd = lambda dy, idx, shp: ops.max_pool2d_backward(dy, idx, shp, k, s, p, d)  # noqa: E731
    (y, idx, dx), (yg, idxg, dxg) = _pool_pair(cp, x, fwd, bwd, use_indices=True)
    np.testing.assert_array_equal(idxg, idx)
    np.testing.assert_array_equal(yg, y)
    np.testing.assert_array_equal(dxg, dx)
    # deterministic: a second backward gives the same bits
    dy = cp.asarray(_rand(y.shape, 7))
    again = ops.max_pool2d_backward(dy, cp.asarray(idx), shape, k, s, p, d)
    np.testing.assert_array_equal(_host(again), dxg)


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("k,s,p,cip", AVG2D + [(3, 1, 1, False), ((1, 4), (1, 3), (0, 2), True)])
def test_avg_pool2d_matches_cpu(cp, k, s, p, cip):
    x = _rand((3, 5, 11, 7), 1)
    fwd = lambda a: ops.avg_pool2d_forward(a, k, s, p, cip)  # noqa: E731
    bwd = lambda dy, shp: ops.avg_pool2d_backward(dy, shp, k, s, p, cip)  # noqa: E731
    (y, _, dx), (yg, _, dxg) = _pool_pair(cp, x, fwd, bwd)
    assert_close(yg, y, rtol=1e-6, atol=1e-6, name="y")
    assert_close(dxg, dx, rtol=1e-6, atol=1e-6, name="dx")


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("shape,o", [((3, 5, 11, 7), o) for o in ADAPTIVE2D] +
                         [((2, 3, 3, 5), (7, 11)), ((2, 2, 13, 1), (5, 1)), ((1, 4, 6, 6), 6)])
def test_adaptive_avg_pool2d_matches_cpu(cp, shape, o):
    """Bins as the CPU's; dx adds dy/count in the CPU's order, so its bits match."""
    x = _rand(shape, 1)
    fwd = lambda a: ops.adaptive_avg_pool2d_forward(a, o)  # noqa: E731
    bwd = lambda dy, shp: ops.adaptive_avg_pool2d_backward(dy, shp)  # noqa: E731
    (y, _, dx), (yg, _, dxg) = _pool_pair(cp, x, fwd, bwd)
    assert_close(yg, y, rtol=1e-6, atol=1e-7, name="y")
    np.testing.assert_array_equal(dxg, dx)


def _conv_layer(dims, case, seed):
    fusetrain.manual_seed(seed)
    if dims == 2:
        N, C, H, W, OC, k, s, p, d, g = case
        return nn.Conv2d(C, OC, k, stride=s, padding=p, dilation=d, groups=g, bias=bool(N % 2)), (N, C, H, W)
    N, C, L, OC, k, s, p, d, g = case
    return nn.Conv1d(C, OC, k, stride=s, padding=p, dilation=d, groups=g, bias=bool(N % 2)), (N, C, L)


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("dims,case", [(2, c) for c in CONV2D_CASES] + [(1, c) for c in CONV1D_CASES])
def test_conv_layers_on_gpu_match_cpu(cp, dims, case):
    """A layer moved with .to("cuda") against the same layer on the CPU: output, input gradient and
    the weight/bias gradients accumulated over two steps (the second reuses the GPU buffers)."""
    cpu, shape = _conv_layer(dims, case, 5)
    dev, _ = _conv_layer(dims, case, 5)
    dev.to("cuda")
    x = _rand(shape, 1)
    xg = cp.asarray(x)
    for step in range(2):
        y, yg = cpu(x), dev(xg)
        assert_close(_host(yg), y, rtol=1e-4, atol=1e-4, name=f"y step {step}")
        dy = np.cos(np.arange(y.size, dtype=np.float32) * (step + 1)).reshape(y.shape)
        dx, dxg = cpu.backward(dy), dev.backward(cp.asarray(dy))
        assert_close(_host(dxg), dx, rtol=1e-4, atol=1e-4, name=f"dx step {step}")
    assert_close(_host(dev.weight.grad), cpu.weight.grad, rtol=1e-4, atol=1e-3, name="dw")
    if cpu.bias is not None:
        assert_close(_host(dev.bias.grad), cpu.bias.grad, rtol=1e-4, atol=1e-3, name="db")


def _pool_layers():
    return [nn.MaxPool2d(3, 2, 1), nn.MaxPool2d((3, 2), (1, 2), (1, 1), (2, 1)), nn.AvgPool2d(3, 2, 1),
            nn.AvgPool2d(2, 1, 1, count_include_pad=False), nn.AdaptiveAvgPool2d((4, 3)), nn.AdaptiveAvgPool2d(1),
            nn.GlobalAvgPool2d(), nn.MaxPool1d(3, 2, 1, 2), nn.MaxPool1d(2), nn.AvgPool1d(3, 2, 1),
            nn.AvgPool1d(4, 1, 2, count_include_pad=False), nn.AdaptiveAvgPool1d(5), nn.GlobalAvgPool1d()]


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("i", range(len(_pool_layers())))
def test_pool_layers_on_gpu_match_cpu(cp, i):
    cpu, dev = _pool_layers()[i], _pool_layers()[i]
    dev.to("cuda")
    x = _rand((3, 5, 11, 7) if "1d" not in type(cpu).__name__ else (2, 3, 13), 1)
    for step in range(2):
        y, yg = cpu(x), dev(cp.asarray(x))
        assert_close(_host(yg), y, rtol=1e-6, atol=1e-6, name=f"{cpu!r} y")
        dy = np.sin(np.arange(y.size, dtype=np.float32) + step).reshape(y.shape)
        assert_close(_host(dev.backward(cp.asarray(dy))), cpu.backward(dy), rtol=1e-6, atol=1e-6,
                     name=f"{cpu!r} dx")


@gpu
@pytest.mark.cuda
def test_conv_and_pool_refuse_mixed_devices(cp):
    x, w = _rand((2, 3, 6, 6), 1), _rand((4, 3, 3, 3), 2)
    with pytest.raises(ValueError, match="same device"):
        ops.conv2d_forward(cp.asarray(x), w)
    with pytest.raises(ValueError, match="same device"):
        ops.conv2d_forward(x, w, out=cp.empty((2, 4, 4, 4), cp.float32))
    y, col = ops.conv2d_forward(cp.asarray(x), cp.asarray(w))
    with pytest.raises(ValueError, match="same device"):
        ops.conv2d_backward(cp.asarray(_rand((2, 4, 4, 4), 3)), col, w, x.shape)
    y, idx = ops.max_pool2d_forward(cp.asarray(x), 2)
    with pytest.raises(ValueError, match="same device"):
        ops.max_pool2d_backward(y, idx.get(), x.shape, 2)
    with pytest.raises(ValueError, match="same device"):
        ops.avg_pool2d_forward(cp.asarray(x), 2, out=np.empty((2, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match="same device"):
        nn.Conv2d(3, 4, 3)(cp.asarray(x))  # the layer's weights stayed on the CPU
    with backend.use_backend("numpy"), pytest.raises(NotImplementedError, match="NumPy twins"):
        ops.max_pool2d_forward(cp.asarray(x), 2)


@gpu
@pytest.mark.cuda
@pytest.mark.parametrize("kind", ["resnet2d", "cnn1d"])
def test_cnn_training_on_gpu_tracks_cpu(kind):
    """SmallResNet (conv, BN+ReLU, residual blocks, max pool, global average pool, dropout) on 8x8
    digits and CNN1d on them read as 64-sample signals: same seed, so the GPU's loss curve follows
    the CPU's up to GEMM rounding (cuBLAS vs the CPU's direct/im2col kernels)."""
    datasets = pytest.importorskip("sklearn.datasets")
    from fusetrain.models import CNN1d, SmallResNet

    X, Y = datasets.load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    Y = Y.astype(np.int64)
    if kind == "resnet2d":
        X = X.reshape(-1, 1, 8, 8)
        model_fn = lambda: SmallResNet(in_channels=1, widths=(8, 16))  # noqa: E731
    else:
        X = X.reshape(-1, 1, 64)
        model_fn = lambda: CNN1d(in_channels=1, channels=(8, 16, 16))  # noqa: E731
    cpu = _train("cpu", X, Y, steps=15, batch=32, model_fn=model_fn, seed=7, lr=3e-3)
    gpu_losses = _train("cuda", X, Y, steps=15, batch=32, model_fn=model_fn, seed=7, lr=3e-3)
    assert_close(gpu_losses[:5], cpu[:5], rtol=1e-3, atol=1e-4, name="first losses")
    assert_close(gpu_losses, cpu, rtol=5e-3, atol=1e-3, name="loss curve")
    assert gpu_losses[-5:].mean() < gpu_losses[:5].mean()  # it trained
