"""CUDA kernels (fusetrain._cuda) against the CPU kernels on the same inputs: optimizers, norms,
batch/layer norm, dropout epilogue, softmax-xent; bitwise-identical dropout masks; a deterministic
global norm; a short training run on the GPU. GPU tests are marked ``cuda`` and skip without a GPU."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fusetrain
from fusetrain import _core, backend, ops
from testutils import assert_close

HAVE_GPU = fusetrain.cuda_available()
gpu = pytest.mark.skipif(not HAVE_GPU, reason="needs a CUDA GPU, CuPy and fusetrain._cuda")

CUDA_FUNCTIONS = (
    "sgd_step", "adagrad_step", "rmsprop_step", "adam_step", "ema_update", "pow_sum", "scale_inplace",
    "clamp_inplace", "count_nonfinite", "batchnorm_forward_train", "batchnorm_forward_eval",
    "batchnorm_backward", "layernorm_forward", "layernorm_backward", "bias_act_dropout_forward",
    "bias_act_dropout_backward", "dropout_mask", "philox4x32_10", "softmax_xent",
)


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
    with pytest.raises(ValueError, match="n must be >= 0"):
        cu.sgd_step(0, 0, 0, -1, 0.1, 0.0, 0.0, 0.0, False, False, 1.0, 0)
    with pytest.raises(ValueError, match="param must be a device pointer"):
        cu.adam_step(0, 0, 0, 0, 0, 5, 1e-3, 0.9, 0.999, 1e-8, 0.0, True, 1, 1.0, 0)
    with pytest.raises(ValueError, match="step must be >= 1"):
        cu.adam_step(16, 16, 16, 16, 0, 1, 1e-3, 0.9, 0.999, 1e-8, 0.0, True, 0, 1.0, 0)
    with pytest.raises(ValueError, match="norm_type must be > 0"):
        cu.pow_sum(16, 4, -1.0, 0)
    with pytest.raises(ValueError, match="multiple of 4"):
        cu.dropout_mask(16, 8, 0.5, 1, 2, 0)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        cu.bias_act_dropout_forward(16, 0, 16, 2, 3, 0, 0.0, 1.0, 1, 0, 0)
    with pytest.raises(ValueError, match="act code"):
        cu.bias_act_dropout_backward(16, 16, 16, 0, 2, 3, 9, 0.0, 0.0, 1, 0, 0)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        cu.batchnorm_forward_train(16, 0, 0, 16, 16, 16, 0, 0, 1, 3, 1, 1e-5, 0.1, False, 0.0, 0, 0, 0)
    with pytest.raises(ValueError, match="needs relu"):
        cu.batchnorm_forward_train(16, 0, 0, 16, 16, 16, 0, 0, 4, 3, 1, 1e-5, 0.1, False, 0.5, 0, 0, 0)
    with pytest.raises(ValueError, match="K >= 1"):
        cu.softmax_xent(16, 16, 0, 3, 0, 1.0, 0)
    # Empty inputs are valid and launch nothing (so they also run without a GPU).
    assert cu.pow_sum(0, 0, 2.0, 0) == 0.0
    assert cu.count_nonfinite(0, 0, 0) == 0
    cu.adam_step(0, 0, 0, 0, 0, 0, 1e-3, 0.9, 0.999, 1e-8, 0.0, True, 1, 1.0, 0)


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
    from test_ops_dropout import KAT

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
    from fusetrain.ops._dispatch import stream

    keep = cp.empty(n, dtype=cp.uint8)
    backend._cuda.dropout_mask(int(keep.data.ptr), n, p, seed, offset, stream())
    np.testing.assert_array_equal(_host(keep).view(bool), ops.dropout_mask(n, p, seed, offset))


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
def test_softmax_xent_matches_cpu(cp, N, K, reduction):
    logits = _rand((N, K), 1, scale=5.0, shift=100.0)
    labels = np.random.default_rng(2).integers(0, K, N).astype(np.int64)
    loss, grad = ops.softmax_cross_entropy(logits, labels, reduction=reduction)
    lossg, gradg = ops.softmax_cross_entropy(cp.asarray(logits), cp.asarray(labels), reduction=reduction)
    assert abs(lossg - loss) <= 1e-9 * max(1.0, abs(loss)), f"{lossg} vs CPU {loss}"
    assert_close(_host(gradg), grad, rtol=1e-6, atol=1e-8, name="dlogits")


@gpu
@pytest.mark.cuda
def test_mixed_devices_are_refused(cp):
    p = cp.asarray(_rand(8, 1))
    with pytest.raises(ValueError, match="same device"):
        ops.sgd_step(p, _rand(8, 2), lr=0.1)


# ---------------------------------------------------------------- a short training run

def _train(device, X, Y, steps=30, batch=64):
    from fusetrain import nn, optim

    fusetrain.manual_seed(3)
    model = nn.Sequential(nn.Linear(64, 48), nn.BatchNorm1d(48), nn.ReLU(), nn.Dropout(0.2), nn.Linear(48, 10))
    xp = np
    if device == "cuda":
        model.to("cuda")
        xp = backend.cupy_module()
    opt = optim.AdamW(model.parameters(), lr=5e-3, max_grad_norm=1.0)
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
