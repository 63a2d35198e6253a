"""CNN blocks and models: shapes, eval forwards against the float64 NumPy twins, central-difference
gradients of the residual and Inception blocks, and state_dict round trips, forwards and gradients
against the same architectures written in torch.nn."""
import copy

import numpy as np
import pytest

from fusetrain.backend import use_backend
from fusetrain.models.cnn import CNN1d, BasicBlock, InceptionBlock, SmallInception, SmallResNet
from testutils import assert_close, torch_or_skip


@pytest.mark.parametrize("make,shape", [
    (lambda: CNN1d(), (5, 1, 40)),
    (lambda: CNN1d(batchnorm=False, dropout=0.0), (3, 1, 40)),
    (lambda: SmallResNet(), (2, 3, 32, 32)),
    (lambda: SmallResNet(in_channels=1, num_classes=7), (3, 1, 8, 8)),
    (lambda: SmallInception(in_channels=1), (2, 1, 8, 8)),
])
def test_models_forward_backward_shapes(make, shape):
    model = make()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    y = model(x)
    assert y.shape[0] == shape[0] and y.ndim == 2 and np.all(np.isfinite(y))
    model.backward(np.ones_like(y))  # the stem conv skips its input gradient: returns None
    for name, p in model.named_parameters():
        assert np.any(p.grad != 0), f"{name} received no gradient"
    model.eval()
    y = model(x).copy()
    twin = copy.deepcopy(model).double()
    with use_backend("numpy"):
        ref = twin(x.astype(np.float64))
    assert_close(y, ref, rtol=1e-4, atol=1e-5, name="eval forward vs the float64 NumPy twins")
    assert_close(model(x), y, rtol=0, atol=0, name="second eval forward (the compiled plan)")


def _gradcheck(module, x, n=8, tol=1e-6):
    rng = np.random.default_rng(1)
    h = 1e-6
    with use_backend("numpy"):
        module.double()
        y = module(x)
        R = rng.standard_normal(y.shape)
        module.zero_grad()
        module(x)
        gx = np.array(module.backward(R))
        f = lambda: float(np.sum(module(x) * R))  # noqa: E731
        targets = [("x", x, gx)] + [(k, p.data, np.array(p.grad)) for k, p in module.named_parameters()]
        for name, arr, grad in targets:
            for flat in rng.choice(arr.size, size=min(n, arr.size), replace=False):
                idx = np.unravel_index(flat, arr.shape)
                old = arr[idx]
                arr[idx] = old + h
                fp = f()
                arr[idx] = old - h
                fm = f()
                arr[idx] = old
                num = (fp - fm) / (2 * h)
                assert abs(grad[idx] - num) <= tol * (1 + abs(num)), f"d/d{name}{idx}: {grad[idx]} vs {num}"


def test_basic_block_with_projection_finite_differences():
    x = np.random.default_rng(2).standard_normal((3, 2, 5, 6))
    _gradcheck(BasicBlock(2, 3, stride=2), x)


def test_inception_block_finite_differences():
    x = np.random.default_rng(3).standard_normal((2, 3, 5, 5))
    block = InceptionBlock(3, 2, 2, 3, 1, 2, 2)
    assert block.out_channels == 9
    _gradcheck(block, x, n=4)


def _torch_twins(torch):
    tnn = torch.nn

    class Residual(tnn.Module):
        def __init__(self, block, shortcut=None):
            super().__init__()
            self.block, self.shortcut = block, shortcut

        def forward(self, x):
            return self.block(x) + (x if self.shortcut is None else self.shortcut(x))

    class GlobalAvg(tnn.Module):
        def forward(self, x):
            return x.mean(dim=tuple(range(2, x.ndim)))

    def cbr(i, o, k, dims=2):
        conv, bn = (tnn.Conv2d, tnn.BatchNorm2d) if dims == 2 else (tnn.Conv1d, tnn.BatchNorm1d)
        return tnn.Sequential(conv(i, o, k, padding=k // 2, bias=False), bn(o), tnn.ReLU())

    def block(i, o):
        return tnn.Sequential(Residual(tnn.Sequential(
            tnn.Conv2d(i, o, 3, padding=1, bias=False), tnn.BatchNorm2d(o), tnn.ReLU(),
            tnn.Conv2d(o, o, 3, padding=1, bias=False), tnn.BatchNorm2d(o))), tnn.ReLU())

    class Concat(tnn.Sequential):
        def forward(self, x):
            return torch.cat([branch(x) for branch in self], dim=1)

    def inception_block(cin, c1, c3r, c3, c5r, c5, pp):
        return Concat(cbr(cin, c1, 1), tnn.Sequential(cbr(cin, c3r, 1), cbr(c3r, c3, 3)),
                      tnn.Sequential(cbr(cin, c5r, 1), cbr(c5r, c5, 5)),
                      tnn.Sequential(tnn.MaxPool2d(3, stride=1, padding=1), cbr(cin, pp, 1)))

    def inception(cin, classes):
        return tnn.Sequential(cbr(cin, 32, 3), inception_block(32, 16, 16, 24, 8, 12, 12), tnn.MaxPool2d(2),
                              inception_block(64, 32, 32, 48, 16, 24, 24), GlobalAvg(), tnn.Linear(128, classes))

    def resnet(cin, classes):
        return tnn.Sequential(cbr(cin, 8, 3), block(8, 8), tnn.MaxPool2d(2), cbr(8, 16, 3), block(16, 16),
                              GlobalAvg(), tnn.Linear(16, classes))

    def cnn1d(classes):
        return tnn.Sequential(cbr(1, 4, 5, 1), cbr(4, 4, 5, 1), tnn.MaxPool1d(2), cbr(4, 6, 3, 1), cbr(6, 6, 3, 1),
                              tnn.MaxPool1d(2), cbr(6, 8, 3, 1), GlobalAvg(), tnn.Linear(8, classes))

    return resnet, cnn1d, inception


def _ours(which):
    if which == "resnet":
        return SmallResNet(1, 5, widths=(8, 16), dropout=0.0)
    if which == "inception":
        return SmallInception(1, 5, dropout=0.0)
    return CNN1d(1, 5, channels=(4, 6, 8), dropout=0.0)


@pytest.mark.parametrize("which", ["resnet", "cnn1d", "inception"])
def test_state_dict_round_trip_and_training_step_match_torch(which):
    torch = torch_or_skip()
    resnet, cnn1d, inception = _torch_twins(torch)
    if which == "resnet":
        ours, theirs = _ours(which), resnet(1, 5)
        x = np.random.default_rng(4).standard_normal((4, 1, 8, 8)).astype(np.float32)
    elif which == "inception":
        ours, theirs = _ours(which), inception(1, 5)
        x = np.random.default_rng(4).standard_normal((3, 1, 8, 8)).astype(np.float32)
    else:
        ours, theirs = _ours(which), cnn1d(5)
        x = np.random.default_rng(4).standard_normal((6, 1, 40)).astype(np.float32)
    theirs = theirs.double()
    sd = ours.state_dict()
    assert {k: v.shape for k, v in sd.items()} == {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    theirs.load_state_dict({k: torch.tensor(v) for k, v in sd.items()})
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ty = theirs(tx)
    y = ours(x)
    assert_close(y, ty.detach().numpy(), rtol=1e-4, atol=1e-4, name="train-mode forward")
    dy = np.random.default_rng(5).standard_normal(y.shape).astype(np.float32)
    ours.backward(dy)
    ty.backward(torch.tensor(dy, dtype=torch.float64))
    tp = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(p.grad, tp[name].grad.numpy(), rtol=1e-3, atol=1e-4, name=f"grad {name}")
    # running statistics after one training step, then torch -> ours and an eval forward
    fresh = _ours(which)
    fresh.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    for k, v in ours.state_dict().items():
        assert_close(fresh.state_dict()[k], v, rtol=1e-5, atol=1e-6, name=k)
    fresh.eval()
    theirs.eval()
    assert_close(fresh(x), theirs(tx).detach().numpy(), rtol=1e-4, atol=1e-4, name="eval forward")
