"""Parity with torch.nn: every layer's forward, input grad, param grads, running statistics and
eval mode; state_dict in both directions; a short training run. (What needs no torch, such as
fused vs unfused Sequential, is in test_sequential.py.)"""
import numpy as np
import pytest

from fusetrain import nn, optim
from testutils import assert_close

torch = pytest.importorskip("torch")
tnn = torch.nn


def _load_into_torch(ours, theirs):
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})


def _compare(ours, theirs, shape, *, steps=2, train=True, seed=0, rtol=1e-5, atol=1e-5):
    """Same weights; a few forward/backward passes with random upstream grads; compare all."""
    rng = np.random.default_rng(seed)
    _load_into_torch(ours, theirs)
    ours.train(train)
    theirs.train(train)
    for _ in range(steps):
        x = rng.standard_normal(shape).astype(np.float32)
        xt = torch.from_numpy(x.copy()).requires_grad_()
        y = ours(x)
        yt = theirs(xt)
        assert_close(y, yt.detach().numpy(), rtol=rtol, atol=atol, name="forward")
        g = rng.standard_normal(y.shape).astype(np.float32)
        gx = ours.backward(g)
        yt.backward(torch.from_numpy(g))
        assert_close(gx, xt.grad.numpy(), rtol=rtol, atol=atol, name="input grad")
    tparams = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(p.grad, tparams[name].grad.numpy(), rtol=rtol, atol=10 * atol, name=f"grad {name}")
    tsd = theirs.state_dict()
    for k, v in ours.state_dict().items():
        assert_close(v, tsd[k].numpy(), rtol=rtol, atol=atol, name=k)


LAYERS = [
    ("linear", lambda: nn.Linear(13, 7), lambda: tnn.Linear(13, 7), (5, 13)),
    ("linear-3d", lambda: nn.Linear(6, 5, bias=False), lambda: tnn.Linear(6, 5, bias=False), (2, 3, 6)),
    ("linear-batch1", lambda: nn.Linear(3, 1), lambda: tnn.Linear(3, 1), (1, 3)),
    ("bn1d", lambda: nn.BatchNorm1d(11), lambda: tnn.BatchNorm1d(11), (17, 11)),
    ("bn1d-ncl", lambda: nn.BatchNorm1d(5), lambda: tnn.BatchNorm1d(5), (4, 5, 7)),
    ("bn1d-cma", lambda: nn.BatchNorm1d(3, momentum=None), lambda: tnn.BatchNorm1d(3, momentum=None), (6, 3)),
    ("bn1d-noaffine", lambda: nn.BatchNorm1d(3, affine=False, momentum=0.3),
     lambda: tnn.BatchNorm1d(3, affine=False, momentum=0.3), (6, 3)),
    ("bn1d-nostats", lambda: nn.BatchNorm1d(4, track_running_stats=False),
     lambda: tnn.BatchNorm1d(4, track_running_stats=False), (5, 4)),
    ("bn2d", lambda: nn.BatchNorm2d(3, eps=1e-3), lambda: tnn.BatchNorm2d(3, eps=1e-3), (4, 3, 5, 3)),
    ("layernorm", lambda: nn.LayerNorm(9), lambda: tnn.LayerNorm(9), (4, 9)),
    ("layernorm-2d", lambda: nn.LayerNorm((3, 4)), lambda: tnn.LayerNorm((3, 4)), (2, 5, 3, 4)),
    ("relu", nn.ReLU, tnn.ReLU, (6, 7)),
    ("leaky", lambda: nn.LeakyReLU(0.2), lambda: tnn.LeakyReLU(0.2), (6, 7)),
    ("leaky-negative", lambda: nn.LeakyReLU(-0.5), lambda: tnn.LeakyReLU(-0.5), (6, 7)),
    ("sigmoid", nn.Sigmoid, tnn.Sigmoid, (6, 7)),
    ("tanh", nn.Tanh, tnn.Tanh, (6, 7)),
    ("flatten", nn.Flatten, tnn.Flatten, (3, 2, 4, 5)),
    ("flatten-mid", lambda: nn.Flatten(1, 2), lambda: tnn.Flatten(1, 2), (3, 2, 4, 5)),
    ("dropout-p0", lambda: nn.Dropout(0.0), lambda: tnn.Dropout(0.0), (4, 5)),
]


@pytest.mark.parametrize("name, ours, theirs, shape", LAYERS, ids=[c[0] for c in LAYERS])
def test_layer_matches_torch(name, ours, theirs, shape):
    torch.manual_seed(0)
    t = theirs()
    for p in t.parameters():  # non-trivial affine parameters
        with torch.no_grad():
            p.add_(torch.randn_like(p) * 0.3)
    m = ours()
    m.load_state_dict({k: v.numpy() for k, v in t.state_dict().items()})
    _compare(m, t, shape, steps=3)
    _compare(m, t, shape, steps=1, train=False, seed=1)


def _torch_mlp():
    return tnn.Sequential(tnn.Linear(20, 32), tnn.BatchNorm1d(32), tnn.ReLU(), tnn.Dropout(0.0),
                          tnn.Linear(32, 5))


def _our_mlp():
    return nn.Sequential(nn.Linear(20, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.0), nn.Linear(32, 5))


def test_state_dict_round_trips_with_torch():
    ours = _our_mlp()
    theirs = _torch_mlp()
    x = np.random.default_rng(0).standard_normal((8, 20)).astype(np.float32)
    ours(x)  # move running stats off their initial values
    sd = ours.state_dict()
    assert list(sd) == list(theirs.state_dict())
    assert sd["1.num_batches_tracked"].dtype == np.int64 and sd["1.num_batches_tracked"].shape == ()
    _load_into_torch(ours, theirs)
    for mode in (True, False):
        ours.train(mode)
        theirs.train(mode)
        assert_close(ours(x), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5, name="ours->torch")
    # and back: torch's (trained-looking) weights into a fresh model
    with torch.no_grad():
        for p in theirs.parameters():
            p.mul_(1.5)
    theirs(torch.from_numpy(x))
    back = _our_mlp()
    back.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    back.eval()
    theirs.eval()
    assert_close(back(x), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5, name="torch->ours")
    assert int(back[1].num_batches_tracked) == int(theirs[1].num_batches_tracked)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_training_run_matches_torch(opt):
    ours = _our_mlp()
    theirs = _torch_mlp()
    _load_into_torch(ours, theirs)
    if opt == "sgd":
        o = optim.SGD(ours.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
        to = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    else:
        o = optim.AdamW(ours.parameters(), lr=3e-3, max_grad_norm=1.0)
        to = torch.optim.AdamW(theirs.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(5)
    X = rng.standard_normal((96, 20)).astype(np.float32)
    Y = (X[:, :5].argmax(1)).astype(np.int64)
    losses = []
    for step in range(24):
        idx = rng.choice(96, 32, replace=False)
        x, y = X[idx], Y[idx]
        o.zero_grad()
        loss = loss_fn(ours(x), y)
        ours.backward(loss_fn.backward())
        o.step()
        to.zero_grad()
        tl = tnn.functional.cross_entropy(theirs(torch.from_numpy(x)), torch.from_numpy(y))
        tl.backward()
        if opt == "adam":
            tn = tnn.utils.clip_grad_norm_(theirs.parameters(), 1.0)
            assert abs(o.last_grad_norm - float(tn)) <= 1e-4 * float(tn)
        to.step()
        assert abs(loss - tl.item()) < 1e-4, f"step {step}: {loss} vs {tl.item()}"
        losses.append(loss)
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])  # it actually trained


def test_residual_and_concat_match_torch_composition():
    torch.manual_seed(0)
    lin1, lin2, lin3 = tnn.Linear(6, 6), tnn.Linear(6, 4), tnn.Linear(6, 2)
    res = nn.Residual(nn.Sequential(nn.Linear(6, 6), nn.ReLU()))
    cat = nn.Concat(nn.Linear(6, 4), nn.Linear(6, 2))
    res.load_state_dict({"block.0.weight": lin1.weight.detach().numpy(), "block.0.bias": lin1.bias.detach().numpy()})
    cat.load_state_dict({"0.weight": lin2.weight.detach().numpy(), "0.bias": lin2.bias.detach().numpy(),
                         "1.weight": lin3.weight.detach().numpy(), "1.bias": lin3.bias.detach().numpy()})
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_()
    h = xt + torch.relu(lin1(xt))
    yt = torch.cat([lin2(h), lin3(h)], dim=1)
    model = nn.Sequential(res, cat)
    y = model(x)
    assert_close(y, yt.detach().numpy(), rtol=1e-5, atol=1e-6, name="forward")
    g = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.from_numpy(g))
    assert_close(model.backward(g), xt.grad.numpy(), rtol=1e-5, atol=1e-6, name="input grad")
    assert_close(res.block[0].weight.grad, lin1.weight.grad.numpy(), rtol=1e-5, atol=1e-5, name="block grad")
    assert_close(cat[1].bias.grad, lin3.bias.grad.numpy(), rtol=1e-5, atol=1e-5, name="branch grad")


def test_weight_norm_matches_torch():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates the hook-based weight_norm in favour of parametrizations
        t = tnn.utils.weight_norm(tnn.Linear(7, 4))
    m = nn.utils.weight_norm(nn.Linear(7, 4))
    assert list(m.state_dict()) == list(t.state_dict())
    _compare(m, t, (5, 7), steps=2)


def test_losses_match_torch():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((7, 5)).astype(np.float32)
    labels = rng.integers(0, 5, 7)
    target = rng.standard_normal((7, 5)).astype(np.float32)
    for red in ("mean", "sum"):
        lt = torch.from_numpy(logits).requires_grad_()
        ref = tnn.CrossEntropyLoss(reduction=red)(lt, torch.from_numpy(labels))
        ref.backward()
        fn = nn.CrossEntropyLoss(reduction=red)
        assert abs(fn(logits, labels) - ref.item()) < 1e-5
        assert_close(fn.backward(), lt.grad.numpy(), rtol=1e-5, atol=1e-7, name="xent grad")
        lt = torch.from_numpy(logits).requires_grad_()
        ref = tnn.MSELoss(reduction=red)(lt, torch.from_numpy(target))
        ref.backward()
        fn = nn.MSELoss(reduction=red)
        assert abs(fn(logits, target) - ref.item()) < 1e-5 * (1 + abs(ref.item()))
        assert_close(fn.backward(), lt.grad.numpy(), rtol=1e-5, atol=1e-7, name="mse grad")


def test_parameter_order_and_repr_like_torch():
    ours, theirs = _our_mlp(), _torch_mlp()
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [tuple(p.shape) for p in ours.parameters()] == [tuple(p.shape) for p in theirs.parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert repr(ours.__getitem__(0)) == repr(theirs[0])
    assert repr(ours).startswith("Sequential(\n  (0): Linear(in_features=20, out_features=32, bias=True)\n  (1): BatchNorm1d(32, ")
