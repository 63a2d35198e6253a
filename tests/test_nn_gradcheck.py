"""Finite-difference gradient checks (float64, NumPy backend) of every layer, container and loss:
input gradients and accumulated parameter gradients against central differences."""
import numpy as np
import pytest

import fusetrain
from fusetrain import nn
from fusetrain import random as frandom
from fusetrain.backend import use_backend

H = 1e-6


def _numeric(f, arr, idx):
    old = arr[idx]
    arr[idx] = old + H
    fp = f()
    arr[idx] = old - H
    fm = f()
    arr[idx] = old
    return (fp - fm) / (2 * H)


def _sample(shape, rng, k=12):
    n = int(np.prod(shape))
    flat = rng.choice(n, size=min(k, n), replace=False)
    return [np.unravel_index(i, shape) for i in flat]


def gradcheck(model, x, *, train=True, tol=1e-6):
    """Check d(sum(model(x) * R))/dx and /dparams against central differences."""
    rng = np.random.default_rng(7)
    with use_backend("numpy"):
        model.double()
        model.train(train)
        x = np.array(x, dtype=np.float64)
        state = frandom.get_rng_state()  # every forward draws the same dropout masks
        frandom.set_rng_state(state)
        y = model(x)
        R = rng.standard_normal(y.shape)

        def f():
            frandom.set_rng_state(state)
            return float(np.sum(model(x) * R))

        model.zero_grad()
        frandom.set_rng_state(state)
        model(x)
        gx = np.array(model.backward(R), copy=True)
        grads = {n: np.array(p.grad, copy=True) for n, p in model.named_parameters()}
        for idx in _sample(x.shape, rng):
            num = _numeric(f, x, idx)
            assert abs(gx[idx] - num) <= tol * (1 + abs(num)), f"d/dx{idx}: {gx[idx]} vs {num}"
        for name, p in model.named_parameters():
            for idx in _sample(p.shape, rng) if p.ndim else [()]:
                num = _numeric(f, p.data, idx)
                got = grads[name][idx]
                assert abs(got - num) <= tol * (1 + abs(num)), f"d/d{name}{idx}: {got} vs {num}"


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.Linear(5, 3), (4, 5)),
    (lambda: nn.Linear(5, 3, bias=False), (2, 3, 5)),
    (lambda: nn.Linear(1, 1), (1, 1)),
    (lambda: nn.BatchNorm1d(3), (7, 3)),
    (lambda: nn.BatchNorm1d(3), (5, 3, 4)),
    (lambda: nn.BatchNorm1d(3, affine=False), (5, 3)),
    (lambda: nn.BatchNorm2d(2), (3, 2, 3, 2)),
    (lambda: nn.BatchNorm1d(3, track_running_stats=False), (6, 3)),
    (lambda: nn.LayerNorm(5), (3, 5)),
    (lambda: nn.LayerNorm((2, 3)), (4, 2, 3)),
    (lambda: nn.LayerNorm(4, elementwise_affine=False), (3, 4)),
    (nn.ReLU, (4, 5)),
    (lambda: nn.LeakyReLU(0.2), (4, 5)),
    (nn.Sigmoid, (4, 5)),
    (nn.Tanh, (3, 7)),
    (lambda: nn.Dropout(0.4), (5, 7)),
    (nn.Flatten, (3, 2, 5)),
    (lambda: nn.Flatten(0, 1), (3, 2, 5)),
    (nn.Identity, (3, 2)),
])
def test_layer_gradients(make, shape):
    gradcheck(make(), _x(*shape))


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.BatchNorm1d(3), (7, 3)),
    (lambda: nn.BatchNorm2d(2), (3, 2, 2, 2)),
    (lambda: nn.Dropout(0.5), (4, 3)),
])
def test_eval_mode_gradients(make, shape):
    m = make()
    with use_backend("numpy"):
        m.double()
        m(_x(*shape, seed=3) * 2 + 1)  # give the running statistics non-trivial values
    gradcheck(m, _x(*shape), train=False)


def test_fused_sequential_gradients():
    m = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Dropout(0.3), nn.Linear(5, 4), nn.BatchNorm1d(4),
                      nn.ReLU(), nn.Dropout(0.25), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2), nn.Dropout(0.2))
    gradcheck(m, _x(8, 6))


def test_batchnorm2d_relu_dropout_chain_gradients():
    m = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(0.3), nn.Flatten(), nn.Linear(12, 2))
    gradcheck(m, _x(5, 3, 2, 2))


def test_residual_and_concat_gradients():
    block = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    gradcheck(nn.Residual(block), _x(3, 4))
    gradcheck(nn.Residual(nn.Linear(4, 3), shortcut=nn.Linear(4, 3, bias=False)), _x(3, 4))
    cat = nn.Concat(nn.Linear(4, 2), nn.Sequential(nn.Linear(4, 3), nn.Sigmoid()), nn.Identity())
    gradcheck(cat, _x(5, 4))
    gradcheck(nn.Concat(nn.BatchNorm1d(3), nn.LeakyReLU(0.1), dim=2), _x(4, 3, 2))


def test_weight_norm_gradients():
    gradcheck(nn.utils.weight_norm(nn.Linear(4, 3)), _x(5, 4))
    gradcheck(nn.utils.weight_norm(nn.Linear(4, 3), dim=None), _x(5, 4))
    gradcheck(nn.Sequential(nn.utils.weight_norm(nn.Linear(4, 3), dim=1), nn.ReLU()), _x(5, 4))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_loss_gradients(reduction):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((6, 5))
    labels = rng.integers(0, 5, 6)
    target = rng.standard_normal((6, 5))
    with use_backend("numpy"):
        for fn, t in ((nn.CrossEntropyLoss(reduction=reduction), labels), (nn.MSELoss(reduction=reduction), target)):
            fn(logits, t)
            g = np.array(fn.backward(), copy=True)
            for idx in _sample(logits.shape, rng):
                num = _numeric(lambda: fn(logits, t), logits, idx)
                assert abs(g[idx] - num) <= 1e-6 * (1 + abs(num)), f"{fn}: {g[idx]} vs {num}"


def test_manual_seed_makes_gradcheck_masks_reproducible():
    # The gradient check relies on restoring the RNG state to redraw the same dropout mask.
    d = nn.Dropout(0.5)
    x = np.ones((3, 11), np.float32)
    st = frandom.get_rng_state()
    a = d(x).copy()
    frandom.set_rng_state(st)
    b = d(x).copy()
    fusetrain.manual_seed(99)
    c = d(x).copy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
