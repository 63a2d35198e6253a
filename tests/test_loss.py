"""The losses: softmax cross-entropy and squared error, loss and gradient against float64 and torch,
stability, determinism, validation."""
import numpy as np
import pytest

from fusetrain import _core, ops
from fusetrain.backend import use_backend
from fusetrain.ops import numpy_ref as ref
from testutils import assert_close, torch_or_skip


@pytest.mark.parametrize("shape", [(1, 1), (1, 10), (37, 10), (128, 1000)])
@pytest.mark.parametrize("scale", [1.0, 80.0])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_matches_float64(shape, scale, reduction):
    rng = np.random.default_rng(shape[0])
    z = (rng.standard_normal(shape) * scale).astype(np.float32)
    y = rng.integers(0, shape[1], shape[0])
    loss, g = ops.softmax_cross_entropy(z, y, reduction=reduction)
    eloss, eg = ref.softmax_cross_entropy(z.astype(np.float64), y, reduction=reduction)
    assert abs(loss - eloss) <= 1e-6 * max(1.0, abs(eloss))
    assert_close(g, eg, rtol=1e-5, atol=1e-7)


def test_matches_torch():
    torch = torch_or_skip()
    rng = np.random.default_rng(3)
    z = (rng.standard_normal((64, 10)) * 5).astype(np.float32)
    y = rng.integers(0, 10, 64)
    tz = torch.tensor(z, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tz, torch.tensor(y))
    tl.backward()
    loss, g = ops.softmax_cross_entropy(z, y)
    assert abs(loss - tl.item()) <= 1e-5 * tl.item()
    assert_close(g, tz.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_huge_logits_are_stable():
    z = np.array([[1e30, -1e30, 0.0], [3e38, 3e38, -3e38]], np.float32)
    loss, g = ops.softmax_cross_entropy(z, np.array([1, 0]), reduction="sum")
    assert np.isfinite(loss) and np.all(np.isfinite(g))
    assert abs(loss - (2e30 + np.log(2))) / 2e30 < 1e-6


def test_labels_validated():
    z = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\), got values in \[0, 4\]"):
        ops.softmax_cross_entropy(z, np.array([0, 1, 4]))
    with pytest.raises(TypeError, match="labels must be an integer array"):
        ops.softmax_cross_entropy(z, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        ops.softmax_cross_entropy(z, np.array([0, 1]))
    with pytest.raises(ValueError, match="logits must be 2-D"):
        ops.softmax_cross_entropy(np.zeros(4, np.float32), np.array([0]))


@pytest.mark.parametrize("shape", [(1,), (7, 3), (128, 1000), (3, 5, 7, 11)])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_matches_float64_and_the_twin(shape, reduction):
    rng = np.random.default_rng(len(shape))
    pred = (rng.standard_normal(shape) * 3).astype(np.float32)
    target = rng.standard_normal(shape).astype(np.float32)
    loss, g = ops.mse_loss(pred, target, reduction=reduction)
    scale = 2.0 / pred.size if reduction == "mean" else 2.0
    eloss, eg = ref.mse_loss(pred.astype(np.float64), target.astype(np.float64), scale)
    eloss = eloss / pred.size if reduction == "mean" else eloss
    assert abs(loss - eloss) <= 1e-6 * max(1.0, abs(eloss))
    assert_close(g, eg, rtol=1e-6, atol=1e-7)
    with use_backend("numpy"):
        tloss, tg = ops.mse_loss(pred, target, reduction=reduction)
    assert abs(loss - tloss) <= 1e-12 * max(1.0, abs(tloss))
    np.testing.assert_array_equal(g, tg)  # the same float difference times the same float scale


def test_mse_matches_torch():
    torch = torch_or_skip()
    rng = np.random.default_rng(4)
    pred, target = rng.standard_normal((2, 64, 10)).astype(np.float32)
    for reduction in ("mean", "sum"):
        tp = torch.tensor(pred, requires_grad=True)
        tl = torch.nn.functional.mse_loss(tp, torch.tensor(target), reduction=reduction)
        tl.backward()
        loss, g = ops.mse_loss(pred, target, reduction=reduction)
        assert abs(loss - tl.item()) <= 1e-5 * tl.item()
        assert_close(g, tp.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_mse_is_bitwise_deterministic_across_threads():
    rng = np.random.default_rng(5)
    pred, target = rng.standard_normal((2, 300_001)).astype(np.float32)
    before = _core.num_threads()
    try:
        results = set()
        for threads in (1, 2, 3):
            _core.set_num_threads(threads)
            results.add(ops.mse_loss(pred, target, compute_grad=False)[0].hex())
        assert len(results) == 1, results
    finally:
        _core.set_num_threads(before)


def test_mse_empty_and_validated():
    empty = np.zeros((0, 3), np.float32)
    loss, g = ops.mse_loss(empty, empty)
    assert np.isnan(loss) and g.shape == (0, 3)
    assert ops.mse_loss(empty, empty, reduction="sum")[0] == 0.0
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(TypeError, match="pred must be a floating-point array"):
        ops.mse_loss(x.astype(np.int32), x)
    with pytest.raises(ValueError, match=r"target must have shape \(2, 3\)"):
        ops.mse_loss(x, np.zeros(6, np.float32))
    with pytest.raises(TypeError, match="target must have dtype float32"):
        ops.mse_loss(x, x.astype(np.float64))
    with pytest.raises(ValueError, match="reduction must be one of"):
        ops.mse_loss(x, x, reduction="none")
    with pytest.raises(ValueError, match="grad_input is updated in place and must be C-contiguous"):
        ops.mse_loss(x, x, grad_input=np.zeros((3, 2), np.float32).T)
