"""Containers beyond one layer: the fused Sequential equals the unfused one, Dropout's masks, a
LeakyReLU of negative slope (fused and not), and one instance used at several places of a
network (weight sharing) against torch."""
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


# ---------------------------------------------------------------- one instance at several places


def _torch_copy(torch, ours):
    """torch's module of the same kind and weights (Linear, Conv2d, BatchNorm1d, activations)."""
    tnn = torch.nn
    kinds = {nn.Linear: lambda m: tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None),
             nn.Conv2d: lambda m: tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding),
             nn.BatchNorm1d: lambda m: tnn.BatchNorm1d(m.num_features),
             nn.ReLU: lambda m: tnn.ReLU(), nn.Tanh: lambda m: tnn.Tanh(), nn.Flatten: lambda m: tnn.Flatten(),
             nn.MaxPool2d: lambda m: tnn.MaxPool2d(m.kernel_size)}
    t = kinds[type(ours)](ours).double()
    t.load_state_dict({k: torch.tensor(v, dtype=torch.float64) if v.dtype.kind == "f" else torch.tensor(v)
                       for k, v in ours.state_dict().items()})
    return t


def _check_shared(torch, ours, theirs, x, shared, steps=2, rtol=1e-5, atol=1e-5):
    """Forward, input and parameter gradients (accumulated over `steps`) of ours vs theirs."""
    rng = np.random.default_rng(0)
    for _ in range(steps):
        xi = (x + rng.standard_normal(x.shape) * 0.1).astype(np.float32)
        tx = torch.tensor(xi, dtype=torch.float64, requires_grad=True)
        ty = theirs(tx)
        y = ours(xi)
        assert_close(y, ty.detach().numpy(), rtol=rtol, atol=atol, name="y")
        g = rng.standard_normal(y.shape).astype(np.float32)
        ty.backward(torch.tensor(g, dtype=torch.float64))
        assert_close(ours.backward(g), tx.grad.numpy(), rtol=rtol, atol=atol, name="dx")
    for name, (m, t) in shared.items():
        tparams = dict(t.named_parameters())
        for n, p in m.named_parameters():
            assert_close(p.grad, tparams[n].grad.numpy(), rtol=rtol, atol=10 * atol, name=f"{name}.{n} grad")
        tbufs = dict(t.named_buffers())
        for n, b in m.named_buffers():
            assert_close(b, tbufs[n].numpy(), rtol=rtol, atol=atol, name=f"{name}.{n}")


@pytest.mark.parametrize("fuse", [True, False])
def test_a_linear_used_twice_matches_torch(fuse):
    torch = torch_or_skip()
    lin = nn.Linear(4, 4)
    ours = nn.Sequential(lin, nn.ReLU(), lin)
    ours.fuse = fuse
    tlin = _torch_copy(torch, lin)
    theirs = torch.nn.Sequential(tlin, torch.nn.ReLU(), tlin)
    _check_shared(torch, ours, theirs, np.random.default_rng(3).standard_normal((5, 4)), {"lin": (lin, tlin)})


@pytest.mark.parametrize("fuse", [True, False])
def test_shared_activations_blocks_and_batchnorm_match_torch(fuse):
    torch = torch_or_skip()
    tnn = torch.nn
    act, bn, l1, l2, l3 = nn.Tanh(), nn.BatchNorm1d(6), nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 2)
    block = nn.Sequential(l1, bn, nn.ReLU())
    ours = nn.Sequential(block, act, l2, bn, act, block, nn.Residual(l2, shortcut=l2), l3)
    ours.fuse = block.fuse = fuse
    tl1, tbn, tl2, tl3 = (_torch_copy(torch, m) for m in (l1, bn, l2, l3))
    tblock = tnn.Sequential(tl1, tbn, tnn.ReLU())
    tact = tnn.Tanh()

    class TorchResidual(tnn.Module):
        def forward(self, x):
            return tl2(x) + tl2(x)
    theirs = tnn.Sequential(tblock, tact, tl2, tbn, tact, tblock, TorchResidual(), tl3)
    _check_shared(torch, ours, theirs, np.random.default_rng(4).standard_normal((8, 6)),
                  {"l1": (l1, tl1), "l2": (l2, tl2), "l3": (l3, tl3), "bn": (bn, tbn)})


def test_a_shared_conv_in_a_cnn_matches_torch():
    torch = torch_or_skip()
    tnn = torch.nn
    conv, head = nn.Conv2d(3, 3, 3, padding=1), nn.Linear(3 * 4 * 4, 2)
    ours = nn.Sequential(conv, nn.ReLU(), conv, nn.MaxPool2d(2), nn.Flatten(), head)
    tconv, thead = _torch_copy(torch, conv), _torch_copy(torch, head)
    theirs = tnn.Sequential(tconv, tnn.ReLU(), tconv, tnn.MaxPool2d(2), tnn.Flatten(), thead)
    _check_shared(torch, ours, theirs, np.random.default_rng(5).standard_normal((2, 3, 8, 8)),
                  {"conv": (conv, tconv), "head": (head, thead)})


def test_shared_dropout_keeps_each_calls_mask():
    # Two calls of one Dropout inside a Concat draw two masks; each branch's backward uses its own
    drop = nn.Dropout(0.5)
    model = nn.Concat(nn.Sequential(drop), nn.Sequential(drop))
    x = np.random.default_rng(6).standard_normal((4, 6)).astype(np.float32)
    fusetrain.manual_seed(9)
    s1, o1 = fusetrain.random.next_philox(x.size)
    s2, o2 = fusetrain.random.next_philox(x.size)
    fusetrain.manual_seed(9)
    y = model(x)
    k1 = ops.dropout_mask(x.size, 0.5, s1, o1).reshape(x.shape)
    k2 = ops.dropout_mask(x.size, 0.5, s2, o2).reshape(x.shape)
    assert not (k1 == k2).all()
    assert_close(y, np.concatenate([np.where(k1, 2 * x, 0), np.where(k2, 2 * x, 0)], axis=1), rtol=1e-6, name="y")
    g = np.concatenate([np.ones_like(x), 3 * np.ones_like(x)], axis=1)
    assert_close(model.backward(g), np.where(k1, 2.0, 0) + np.where(k2, 6.0, 0), rtol=1e-6, name="dx")


def test_a_custom_module_calling_a_child_twice_gets_each_calls_gradient():
    torch = torch_or_skip()

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.act = nn.Linear(3, 3), nn.Tanh()

        def forward(self, x):
            return self.act(self.lin(self.act(self.lin(x))))

        def backward(self, g):
            return self.lin.backward(self.act.backward(self.lin.backward(self.act.backward(g))))

    ours = Twice()
    tlin = _torch_copy(torch, ours.lin)
    x = np.random.default_rng(7).standard_normal((4, 3))
    _check_shared(torch, ours, lambda t: torch.tanh(tlin(torch.tanh(tlin(t)))), x, {"lin": (ours.lin, tlin)})


def test_repeated_forwards_without_backward_keep_one_state():
    # Separate outermost calls are separate passes: nothing piles up between them
    lin = nn.Linear(3, 2)
    model = nn.Sequential(lin, nn.ReLU(), nn.Linear(2, 3), lin)
    x = np.ones((2, 3), np.float32)
    for _ in range(5):
        model(x)
        lin(x)
    assert len(lin.__dict__.get("_cache_stack", [])) == 0
    model(x)
    assert len(lin.__dict__["_cache_stack"]) == 1


def test_a_shared_module_in_eval_mode_matches_torch():
    # eval forwards run compiled (saving nothing); the backward replays them through the layers
    torch = torch_or_skip()
    lin, bn = nn.Linear(4, 4), nn.BatchNorm1d(4)
    ours = nn.Sequential(lin, bn, nn.Tanh(), lin, bn)
    x = np.random.default_rng(8).standard_normal((6, 4))
    ours(x.astype(np.float32))  # running statistics away from their initial values
    tlin, tbn = _torch_copy(torch, lin), _torch_copy(torch, bn)
    theirs = torch.nn.Sequential(tlin, tbn, torch.nn.Tanh(), tlin, tbn)
    ours.eval()
    theirs.eval()
    _check_shared(torch, ours, theirs, x, {"lin": (lin, tlin), "bn": (bn, tbn)})


def test_a_model_with_a_shared_layer_loads_its_own_state_dict_as_torch_does():
    torch = torch_or_skip()
    lin = nn.Linear(2, 2)
    model = nn.Sequential(lin, nn.ReLU(), lin)
    tlin = torch.nn.Linear(2, 2)
    theirs = torch.nn.Sequential(tlin, torch.nn.ReLU(), tlin)
    state = model.state_dict()
    assert list(state) == list(theirs.state_dict())
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    state["0.weight"] = state["0.weight"] + 1
    state["2.weight"] = state["0.weight"].copy()
    model.load_state_dict(state)
    assert np.array_equal(lin.weight.data, state["0.weight"])
    x = np.random.default_rng(0).normal(size=(3, 2)).astype(np.float32)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    assert_close(model(x), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-6, atol=1e-6)


def test_an_activation_subclass_with_its_own_forward_runs_it_in_training_and_eval():
    """Sequential fuses an activation into the preceding Linear only when skipping its forward loses
    nothing: the rule the eval plans use (a subclass that overrides forward is not fused)."""
    calls = []

    class CountingReLU(nn.ReLU):
        def forward(self, x):
            calls.append(x.shape)
            return super().forward(x)

    model = nn.Sequential(nn.Linear(3, 4), CountingReLU(), nn.Linear(4, 2))
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    y = model(x)
    assert calls == [(5, 4)]
    model.backward(np.ones_like(y))
    model.eval()
    model(x)
    assert calls == [(5, 4), (5, 4)]
