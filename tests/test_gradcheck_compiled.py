"""Gradient checks of the compiled path: what the fused C++ kernels' backwards return (float32)
against directional derivatives of the same kernels' forwards, accumulated in float64.

For a random upstream gradient R and a random direction (v_x, v_theta) through the input and
every parameter, d/dt sum(R * model(x + t v_x; theta + t v_theta)) at t = 0 must equal
<grad_x, v_x> + sum <grad_theta, v_theta>. The derivative is a central difference with
Richardson extrapolation (error O(h^4)) of float32 forwards summed in float64; h is large enough
that float32 rounding stays far below the tolerance. Layers with kinks (ReLU, max pooling) are
checked on inputs whose kinks lie farther than the step. (test_nn_gradcheck.py checks the NumPy
twins with central differences in float64; this file checks the kernels that actually train.)
"""
import numpy as np
import pytest

from fusetrain import nn, ops
from fusetrain import random as frandom
from fusetrain.models.cnn import BasicBlock, InceptionBlock


def directional_check(model, x, *, train=True, h=0.02, scale=1.0, rtol=1e-3, seed=0):
    rng = np.random.default_rng(seed)
    model.train(train)
    params = list(model.parameters())
    x64 = np.asarray(x, np.float64)
    state = frandom.get_rng_state()  # every forward draws the same dropout masks

    def forward(t, vx, vp, theta):
        for p, th, v in zip(params, theta, vp):
            p.data[...] = th + t * v
        frandom.set_rng_state(state)
        return model((x64 + t * vx).astype(np.float32))

    theta = [p.data.astype(np.float64) for p in params]
    frandom.set_rng_state(state)
    y = model(x64.astype(np.float32))
    R = rng.standard_normal(y.shape)
    vx = scale * rng.standard_normal(x64.shape)
    vp = [scale * rng.standard_normal(p.shape) for p in params]
    model.zero_grad()
    frandom.set_rng_state(state)
    model(x64.astype(np.float32))
    gx = model.backward(R.astype(np.float32))
    if gx is None:  # a network whose first layer skips its input gradient
        vx = np.zeros_like(vx)
        gx = np.zeros(x64.shape)
    expected = float(np.sum(np.asarray(gx, np.float64) * vx))
    expected += sum(float(np.sum(p.grad.astype(np.float64) * v)) for p, v in zip(params, vp))
    try:
        def slope(s):
            fp = float(np.sum(forward(s, vx, vp, theta).astype(np.float64) * R))
            fm = float(np.sum(forward(-s, vx, vp, theta).astype(np.float64) * R))
            return (fp - fm) / (2 * s)
        numeric = (4 * slope(h / 2) - slope(h)) / 3
    finally:
        for p, th in zip(params, theta):
            p.data[...] = th
    # the sum's size sets the float32 rounding of the differences
    size = float(np.sum(np.abs(y.astype(np.float64) * R))) + 1.0
    assert abs(numeric - expected) <= rtol * (abs(expected) + 1e-3 * size), \
        f"directional derivative {numeric} vs backward {expected}"


def _x(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape)


def _away_from_kinks(*shape, seed=1):
    """Values at least 0.5 from 0 and at least 0.1 from each other: ReLU and max-pool kinks lie
    farther than the check's steps (h * scale * |v| < 0.05)."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    v = (rng.permutation(n) - n / 2) * 0.1
    return (v + np.sign(v + 0.05) * 0.5).reshape(shape)


SMOOTH = {
    "linear": (lambda: nn.Linear(7, 5), (6, 7)),
    "linear-3d-nobias": (lambda: nn.Linear(4, 3, bias=False), (2, 3, 4)),
    "linear-tanh-fused": (lambda: nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)), (5, 6)),
    "linear-sigmoid-dropout-fused": (lambda: nn.Sequential(nn.Linear(6, 8), nn.Sigmoid(), nn.Dropout(0.3),
                                                           nn.Linear(8, 3), nn.Dropout(0.2)), (9, 6)),
    "conv2d": (lambda: nn.Conv2d(3, 4, 3, padding=1), (2, 3, 7, 6)),
    "conv2d-strided": (lambda: nn.Conv2d(3, 5, 3, stride=2, padding=1), (2, 3, 9, 8)),
    "conv2d-dilated": (lambda: nn.Conv2d(2, 3, (3, 2), dilation=(2, 1), padding=(2, 0)), (2, 2, 8, 7)),
    "conv2d-grouped": (lambda: nn.Conv2d(4, 6, 3, groups=2, padding=1, bias=False), (3, 4, 5, 5)),
    "conv2d-depthwise": (lambda: nn.Conv2d(4, 4, 3, groups=4, stride=2, padding=1), (2, 4, 7, 7)),
    "conv2d-1x1-stride2": (lambda: nn.Conv2d(3, 6, 1, stride=2), (2, 3, 6, 6)),
    "conv2d-many-small-images": (lambda: nn.Conv2d(3, 4, 3, padding=1), (23, 3, 5, 6)),
    "conv1d": (lambda: nn.Conv1d(2, 3, 5, stride=2, padding=2), (3, 2, 17)),
    "batchnorm1d": (lambda: nn.BatchNorm1d(5), (8, 5)),
    "batchnorm1d-ncl": (lambda: nn.BatchNorm1d(3), (4, 3, 6)),
    "batchnorm2d": (lambda: nn.BatchNorm2d(3), (4, 3, 5, 4)),
    "layernorm": (lambda: nn.LayerNorm(6), (5, 6)),
    "layernorm-2d": (lambda: nn.LayerNorm((3, 4)), (2, 5, 3, 4)),
    "avgpool2d": (lambda: nn.AvgPool2d(3, 2, 1), (2, 3, 7, 6)),
    "avgpool2d-no-pad-count": (lambda: nn.AvgPool2d(2, 1, 1, count_include_pad=False), (2, 2, 5, 5)),
    "avgpool1d": (lambda: nn.AvgPool1d(3, 2, 1), (2, 3, 11)),
    "adaptive-avgpool2d": (lambda: nn.AdaptiveAvgPool2d((3, 2)), (2, 3, 7, 5)),
    "global-avgpool2d": (lambda: nn.GlobalAvgPool2d(), (3, 4, 5, 6)),
    "conv-bn-tanh-pool-linear": (lambda: nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(4 * 3 * 3, 6), nn.Tanh(), nn.Dropout(0.25), nn.Linear(6, 3)), (4, 2, 6, 6)),
    "residual-concat": (lambda: nn.Sequential(
        nn.Residual(nn.Sequential(nn.Linear(5, 5), nn.Tanh())),
        nn.Concat(nn.Linear(5, 2), nn.Sequential(nn.LayerNorm(5), nn.Linear(5, 3), nn.Sigmoid()))), (4, 5)),
}


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("case", sorted(SMOOTH))
def test_compiled_backward_matches_directional_derivative(case, train):
    make, shape = SMOOTH[case]
    directional_check(make(), _x(*shape), train=train)


KINKED = {
    "relu": (nn.ReLU, (5, 8)),
    "leaky-relu": (lambda: nn.LeakyReLU(0.1), (5, 8)),
    "leaky-relu-negative": (lambda: nn.LeakyReLU(-0.5), (5, 8)),
    "maxpool2d": (lambda: nn.MaxPool2d(3, 2, 1), (2, 3, 7, 6)),
    "maxpool2d-dilated": (lambda: nn.MaxPool2d(2, 1, 1, 2), (2, 2, 5, 5)),
    "maxpool1d": (lambda: nn.MaxPool1d(3, 2, 1), (2, 3, 11)),
}


@pytest.mark.parametrize("case", sorted(KINKED))
def test_compiled_backward_of_piecewise_linear_layers(case):
    make, shape = KINKED[case]
    directional_check(make(), _away_from_kinks(*shape), scale=0.2)


@pytest.mark.parametrize("make,shape", [
    (lambda: BasicBlock(2, 3, stride=2), (2, 2, 6, 5)),
    (lambda: InceptionBlock(3, 2, 2, 3, 1, 2, 2), (2, 3, 5, 5)),
])
def test_compiled_backward_of_cnn_blocks(make, shape):
    # ReLUs after batchnorm: a small step (scale) so that no pre-activation crosses 0
    block = make()
    directional_check(block, _x(*shape, seed=3), scale=1e-2, rtol=5e-3)


def test_compiled_softmax_cross_entropy_gradient():
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((7, 5))
    labels = rng.integers(0, 5, 7)
    v = rng.standard_normal(logits.shape)
    _, grad = ops.softmax_cross_entropy(logits.astype(np.float32), labels)
    loss = lambda t: ops.softmax_cross_entropy((logits + t * v).astype(np.float32), labels)[0]  # noqa: E731
    slope = lambda s: (loss(s) - loss(-s)) / (2 * s)  # noqa: E731
    numeric = (4 * slope(0.025) - slope(0.05)) / 3
    expected = float(np.sum(grad.astype(np.float64) * v))
    assert abs(numeric - expected) <= 1e-3 * (abs(expected) + 1e-3)
