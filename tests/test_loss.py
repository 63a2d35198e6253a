"""Softmax cross-entropy: loss and gradient against float64 and torch, stability, validation."""
import numpy as np
import pytest

from fusetrain import ops
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
