"""Containers beyond one layer: the fused Sequential equals the unfused one, Dropout's masks, a
LeakyReLU of negative slope (fused and not) against torch."""
import numpy as np
import pytest

import fusetrain
from fusetrain import nn, ops
from testutils import assert_close, torch_or_skip


def test_dropout_in_eval_is_identity_and_train_uses_philox_mask():
    d = nn.Dropout(0.3)
    x = np.random.default_rng(0).standard_normal((7, 13)).astype(np.float32)
    seed, offset = fusetrain.random.next_philox(0)
    y = d(x).copy()
    keep = fusetrain.ops.dropout_mask(x.size, 0.3, seed, offset).reshape(x.shape)
    assert_close(y, np.where(keep, x / 0.7, 0.0), rtol=1e-6, name="dropout forward")
    g = np.ones_like(x)
    assert_close(d.backward(g), np.where(keep, 1 / 0.7, 0.0), rtol=1e-6, name="dropout backward")
    assert 0.55 < keep.mean() < 0.85
    d.eval()
    assert d(x) is x


def _mlp(fuse, p=0.3, slope=0.05):
    m = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Dropout(p), nn.Linear(16, 12), nn.BatchNorm1d(12),
                      nn.ReLU(), nn.Dropout(p), nn.Linear(12, 8), nn.LeakyReLU(slope), nn.Linear(8, 6),
                      nn.Tanh(), nn.Dropout(p), nn.Linear(6, 5), nn.Dropout(p), nn.Linear(5, 3))
    m.fuse = fuse
    return m


@pytest.mark.parametrize("slope", [0.05, -0.5])
@pytest.mark.parametrize("train", [True, False])
def test_fused_sequential_equals_unfused(train, slope):
    fusetrain.manual_seed(3)
    fused = _mlp(True, slope=slope)
    plain = _mlp(False, slope=slope)
    plain.load_state_dict(fused.state_dict())
    assert len(fused._plan()) < len(plain._plan())  # fusion actually happened
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.standard_normal((9, 10)).astype(np.float32)
        g = rng.standard_normal((9, 3)).astype(np.float32)
        outs = []
        for m in (fused, plain):
            m.train(train)
            fusetrain.manual_seed(11)  # both draw the same dropout (seed, offset)s
            y = m(x).copy()
            gx = m.backward(g).copy()
            outs.append((y, gx))
        assert_close(outs[0][0], outs[1][0], rtol=1e-5, atol=1e-6, name="output")
        assert_close(outs[0][1], outs[1][1], rtol=1e-5, atol=1e-6, name="input grad")
    for (n, p), (_, q) in zip(fused.named_parameters(), plain.named_parameters()):
        assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-5, name=n)
    for (n, a), (_, b) in zip(fused.named_buffers(), plain.named_buffers()):
        assert_close(a, b, rtol=1e-6, atol=1e-7, name=n)


@pytest.mark.parametrize("slope", [-0.5, -2.0, 0.0, 0.3, 1.5])
def test_leaky_relu_of_any_slope_matches_torch(slope):
    torch = torch_or_skip()
    x = np.array([[-1.0, 2.0, 0.0, -0.25, 3.5, -4.0]], np.float32)
    g = np.array([[1.0, 1.0, 1.0, 2.0, -1.0, 0.5]], np.float32)
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ty = torch.nn.functional.leaky_relu(tx, slope)
    ty.backward(torch.tensor(g, dtype=torch.float64))
    for backend in ("fused", "numpy"):
        with fusetrain.backend.use_backend(backend):
            m = nn.LeakyReLU(slope)
            assert_close(m(x), ty.detach().numpy(), rtol=1e-7, atol=0, name=f"{backend} y")
            assert_close(m.backward(g), tx.grad.numpy(), rtol=1e-7, atol=0, name=f"{backend} dx")


@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("slope", [-0.5, 0.2])
def test_linear_leaky_relu_dropout_chain_matches_torch(fuse, slope):
    # After a Linear the activation may run in the GEMM's epilogue; a negative slope must not
    torch = torch_or_skip()
    tnn = torch.nn
    torch.manual_seed(0)
    t = tnn.Sequential(tnn.Linear(5, 7), tnn.LeakyReLU(slope), tnn.Linear(7, 3)).double()
    m = nn.Sequential(nn.Linear(5, 7), nn.LeakyReLU(slope), nn.Linear(7, 3))
    m.fuse = fuse
    m.load_state_dict({k: v.float().numpy() for k, v in t.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((6, 5)).astype(np.float32)
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ty = t(tx)
    g = np.random.default_rng(2).standard_normal((6, 3)).astype(np.float32)
    ty.backward(torch.tensor(g, dtype=torch.float64))
    assert_close(m(x), ty.detach().numpy(), rtol=1e-5, atol=1e-5, name="y")
    assert_close(m.backward(g), tx.grad.numpy(), rtol=1e-5, atol=1e-5, name="dx")
    tp = dict(t.named_parameters())
    for n, p in m.named_parameters():
        assert_close(p.grad, tp[n].grad.numpy(), rtol=1e-5, atol=1e-5, name=n)


def test_the_leaky_relu_epilogue_backward_refuses_a_negative_slope():
    y = np.array([0.5, 2.0], np.float32)
    for backend in ("fused", "numpy"):
        with fusetrain.backend.use_backend(backend):
            gx = np.full(2, 9.0, np.float32)
            with pytest.raises(ValueError, match="negative_slope must be >= 0 for the leaky_relu backward"):
                ops.bias_act_dropout_backward(np.ones(2, np.float32), y, act="leaky_relu", negative_slope=-0.5,
                                              grad_input=gx)
            np.testing.assert_array_equal(gx, 9.0)
    with pytest.raises(ValueError, match="negative_slope must be >= 0"):
        fusetrain._core.bias_act_dropout_backward(np.ones(2, np.float32), y, np.zeros(2, np.float32), None, 1, 2, 2,
                                                  -0.5, 0.0, 0, 0, None)
