"""Fused optimizer kernels against the float64 NumPy twin and torch.optim over many steps."""
import numpy as np
import pytest

import fusetrain
from fusetrain import ops
from fusetrain.ops import numpy_ref as ref
from testutils import assert_close, torch_or_skip

SIZES = [0, 1, 7, 33, 1031, 278011]


def _state(n, k, seed=0, positive=()):
    rng = np.random.default_rng(seed)
    arrs = [rng.standard_normal(n).astype(np.float32) for _ in range(k)]
    for i in positive:
        arrs[i] = np.abs(arrs[i])
    return arrs


CONFIGS = {
    "sgd": [dict(lr=0.1), dict(lr=0.05, momentum=0.9, weight_decay=1e-2),
            dict(lr=0.05, momentum=0.9, nesterov=True), dict(lr=0.05, momentum=0.5, dampening=0.3)],
    "adam": [dict(lr=1e-2), dict(lr=1e-2, weight_decay=0.1), dict(lr=1e-2, amsgrad=True, beta1=0.8),
             dict(lr=1e-2, weight_decay=0.1, decoupled=True), dict(lr=3e-3, decoupled=True, amsgrad=True)],
    "rmsprop": [dict(lr=1e-2), dict(lr=1e-2, centered=True), dict(lr=1e-2, momentum=0.9, weight_decay=0.05),
                dict(lr=1e-3, momentum=0.5, centered=True, alpha=0.9)],
    "adagrad": [dict(lr=0.1), dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, eps=1e-6)],
}


def _run(kind, cfg, arrs, steps, grad_scale=1.0, regrad=None):
    p, g = arrs[0], arrs[1]
    cfg = dict(cfg)
    for step in range(1, steps + 1):
        if regrad is not None:
            g[...] = regrad(step)
        if kind == "sgd":
            ops.sgd_step(p, g, arrs[2], first_step=step == 1, grad_scale=grad_scale, **cfg)
        elif kind == "adam":
            ops.adam_step(p, g, arrs[2], arrs[3], arrs[4], step=step, grad_scale=grad_scale, **cfg)
        elif kind == "rmsprop":
            ops.rmsprop_step(p, g, arrs[2], arrs[3], arrs[4], grad_scale=grad_scale, **cfg)
        else:
            ops.adagrad_step(p, g, arrs[2], step=step, grad_scale=grad_scale, **cfg)
    return arrs


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind", list(CONFIGS))
def test_kernel_matches_float64_twin(kind, n):
    for cfg in CONFIGS[kind]:
        init = _state(n, 5, seed=n)
        # |g| >= 0.5 keeps d = g*s + wd*p away from cancellation: RMSprop and Adagrad divide d by
        # ~|d|, which would turn float32 rounding of a near-zero d into an O(1) difference.
        init[1] = np.copysign(0.5 + np.abs(init[1]), init[1]).astype(np.float32)
        init[2] = np.zeros(n, np.float32)  # state starts at zero like a fresh optimizer
        init[3] = np.zeros(n, np.float32)
        init[4] = np.zeros(n, np.float32)
        fused = _run(kind, cfg, [a.copy() for a in init], steps=5, grad_scale=0.7)
        with fusetrain.backend.use_backend("numpy"):
            exact = _run(kind, cfg, [a.astype(np.float64) for a in init], steps=5, grad_scale=0.7)
        for i, (a, e) in enumerate(zip(fused, exact)):
            assert_close(a, e, rtol=2e-5, atol=2e-6, name=f"{kind} {cfg} buffer {i}")


def _torch_opt(torch, kind, cfg, param):
    cfg = dict(cfg)
    if kind == "sgd":
        return torch.optim.SGD([param], **cfg)
    if kind == "adam":
        betas = (cfg.pop("beta1", 0.9), cfg.pop("beta2", 0.999))
        cls = torch.optim.AdamW if cfg.pop("decoupled", False) else torch.optim.Adam
        cfg.setdefault("weight_decay", 0.0)
        return cls([param], betas=betas, **cfg)
    if kind == "rmsprop":
        return torch.optim.RMSprop([param], **cfg)
    return torch.optim.Adagrad([param], **cfg)


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_matches_torch_over_steps(kind):
    torch = torch_or_skip()
    n = 1031
    steps = 12
    rng = np.random.default_rng(42)
    grads = [rng.standard_normal(n).astype(np.float32) for _ in range(steps)]
    for cfg in CONFIGS[kind]:
        p0 = rng.standard_normal(n).astype(np.float32)
        arrs = [p0.copy(), np.zeros(n, np.float32)] + [np.zeros(n, np.float32) for _ in range(3)]
        _run(kind, cfg, arrs, steps, regrad=lambda s: grads[s - 1])
        tp = torch.nn.Parameter(torch.tensor(p0))
        opt = _torch_opt(torch, kind, cfg, tp)
        for s in range(steps):
            tp.grad = torch.tensor(grads[s])
            opt.step()
        assert_close(arrs[0], tp.detach().numpy(), rtol=1e-5, atol=1e-6, name=f"{kind} {cfg}")


def test_grad_scale_equals_clip_then_step():
    torch = torch_or_skip()
    n = 5003
    rng = np.random.default_rng(3)
    p0 = rng.standard_normal(n).astype(np.float32)
    g = (rng.standard_normal(n) * 10).astype(np.float32)
    norm = ops.global_norm([g])
    coef = ops.clip_coef(norm, 1.0)
    assert coef < 1.0
    p, m, v = p0.copy(), np.zeros(n, np.float32), np.zeros(n, np.float32)
    ops.adam_step(p, g, m, v, lr=1e-2, weight_decay=1e-2, decoupled=True, step=1, grad_scale=coef)
    tp = torch.nn.Parameter(torch.tensor(p0))
    tp.grad = torch.tensor(g)
    tnorm = torch.nn.utils.clip_grad_norm_([tp], 1.0)
    torch.optim.AdamW([tp], lr=1e-2, weight_decay=1e-2).step()
    assert abs(norm - float(tnorm)) <= 1e-5 * norm
    assert_close(p, tp.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_ema_update_matches_reference():
    rng = np.random.default_rng(0)
    avg, p = rng.standard_normal(10007).astype(np.float32), rng.standard_normal(10007).astype(np.float32)
    expect = avg.astype(np.float64) * 0.9 + p.astype(np.float64) * 0.1
    ops.ema_update(avg, p, 0.9)
    assert_close(avg, expect, rtol=1e-6, atol=1e-6)


def test_bad_inputs_raise_and_leave_targets_untouched():
    p = np.ones(10, np.float32)
    g = np.ones(10, np.float32)
    m, v = np.zeros(10, np.float32), np.zeros(10, np.float32)
    with pytest.raises(TypeError, match="grad must have dtype float32"):
        ops.adam_step(p, g.astype(np.float64), m, v, lr=1e-3, step=1)
    with pytest.raises(ValueError, match="exp_avg must have the same number of elements"):
        ops.adam_step(p, g, np.zeros(9, np.float32), v, lr=1e-3, step=1)
    with pytest.raises(ValueError, match="beta1 must be < 1.0"):
        ops.adam_step(p, g, m, v, lr=1e-3, beta1=1.0, step=1)
    with pytest.raises(ValueError, match="lr must be >= 0.0"):
        ops.sgd_step(p, g, lr=-1.0)
    big = np.ones((10, 2), np.float32)
    with pytest.raises(ValueError, match="param is updated in place and must be C-contiguous"):
        ops.sgd_step(big[:, 0], g, lr=0.1)
    with pytest.raises(ValueError, match="momentum_buffer is required"):
        ops.sgd_step(p, g, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="step must be >= 1"):
        ops.adam_step(p, g, m, v, lr=1e-3, step=0)
    ro = np.ones(10, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        ops.sgd_step(ro, g, lr=0.1)
    assert np.all(p == 1) and np.all(m == 0) and np.all(v == 0) and np.all(big == 1)


def test_twin_is_the_documented_formula():
    """The float64 twin itself against a hand-written AdamW step (guards the oracle)."""
    p, g = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    m, v = np.zeros(2), np.zeros(2)
    ref.adam_step(p, g, m, v, None, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1,
                  decoupled=True, step=1, grad_scale=1.0)
    # step 1: m_hat = g, v_hat = g^2, so the update is lr * g/(|g| + eps) = lr * sign(g)
    expect = np.array([1.0, -2.0]) * (1 - 0.1 * 0.1) - 0.1 * np.sign(g) * (np.abs(g) / (np.abs(g) + 1e-8))
    assert_close(p, expect, rtol=1e-12, atol=1e-12)
