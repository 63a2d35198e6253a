"""CNN blocks and models: shapes, central-difference gradients of the residual and Inception
blocks, and state_dict round trips with the same architecture written in torch.nn."""
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
    assert_close(model(x), model(x), name="eval forward is deterministic")


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

    def resnet(cin, classes):
        return tnn.Sequential(cbr(cin, 8, 3), block(8, 8), tnn.MaxPool2d(2), cbr(8, 16, 3), block(16, 16),
                              GlobalAvg(), tnn.Linear(16, classes))

    def cnn1d(classes):
        return tnn.Sequential(cbr(1, 4, 5, 1), cbr(4, 4, 5, 1), tnn.MaxPool1d(2), cbr(4, 6, 3, 1), cbr(6, 6, 3, 1),
                              tnn.MaxPool1d(2), cbr(6, 8, 3, 1), GlobalAvg(), tnn.Linear(8, classes))

    return resnet, cnn1d


@pytest.mark.parametrize("which", ["resnet", "cnn1d"])
def test_state_dict_round_trip_and_training_step_match_torch(which):
    torch = torch_or_skip()
    resnet, cnn1d = _torch_twins(torch)
    if which == "resnet":
        ours, theirs = SmallResNet(1, 5, widths=(8, 16), dropout=0.0), resnet(1, 5)
        x = np.random.default_rng(4).standard_normal((4, 1, 8, 8)).astype(np.float32)
    else:
        ours, theirs = CNN1d(1, 5, channels=(4, 6, 8), dropout=0.0), cnn1d(5)
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
    fresh = SmallResNet(1, 5, widths=(8, 16), dropout=0.0) if which == "resnet" else CNN1d(1, 5, (4, 6, 8),
                                                                                            dropout=0.0)
    fresh.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    for k, v in ours.state_dict().items():
        assert_close(fresh.state_dict()[k], v, rtol=1e-5, atol=1e-6, name=k)
    fresh.eval()
    theirs.eval()
    assert_close(fresh(x), theirs(tx).detach().numpy(), rtol=1e-4, atol=1e-4, name="eval forward")
