"""Module mechanics (registration, traversal, state_dict errors, train/eval, zero_grad, devices,
scratch-buffer safety), init schemes, clipping utilities and bad-input messages."""
import math
import warnings

import numpy as np
import pytest

import fusetrain
from fusetrain import nn
from fusetrain.nn import init
from testutils import assert_close


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.scale = nn.Parameter(np.ones(4))
        self.register_buffer("count", np.zeros((), np.int64))
        self.register_buffer("tmp", np.zeros(2), persistent=False)

    def forward(self, x):
        return self.fc(x) * self.scale.data


def test_registration_traversal_and_state_dict_keys():
    b = Block()
    assert [n for n, _ in b.named_parameters()] == ["scale", "fc.weight", "fc.bias"]
    assert list(b.state_dict()) == ["scale", "count", "fc.weight", "fc.bias"]  # own, then children
    assert [n for n, _ in b.named_buffers()] == ["count", "tmp"]
    assert [type(m).__name__ for m in b.modules()] == ["Block", "Linear"]
    assert list(b.children()) == [b.fc]
    b.fc = None
    assert [n for n, _ in b.named_parameters()] == ["scale"]
    with pytest.raises(TypeError, match="Parameter"):
        b.scale = np.ones(4)
    shared = nn.Linear(2, 2)
    seq = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(seq.parameters())) == 2  # shared parameters are listed once


def test_load_state_dict_errors_list_problems():
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    sd = m.state_dict()
    bad = dict(sd)
    del bad["1.running_var"]
    bad["2.weight"] = np.zeros(1)
    bad["0.bias"] = np.zeros(5)
    with pytest.raises(RuntimeError) as exc:
        m.load_state_dict(bad)
    msg = str(exc.value)
    assert "missing keys: 1.running_var" in msg and "unexpected keys: 2.weight" in msg
    assert "0.bias: expected shape (4,), got (5,)" in msg
    bad["0.bias"] = np.zeros(4)
    missing, unexpected = m.load_state_dict(bad, strict=False)
    assert missing == ["1.running_var"] and unexpected == ["2.weight"]
    assert not m[0].bias.data.any()


def test_state_dict_is_a_copy_and_load_is_in_place():
    m = nn.Linear(3, 2)
    w = m.weight.data
    sd = m.state_dict()
    sd["weight"][:] = 7
    assert not np.any(m.weight.data == 7)
    m.load_state_dict(sd)
    assert m.weight.data is w and np.all(w == 7)


def test_train_eval_and_zero_grad():
    m = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5), nn.BatchNorm1d(3))
    assert all(x.training for x in m.modules())
    m.eval()
    assert not any(x.training for x in m.modules())
    m.train()
    m(np.ones((4, 3), np.float32))
    m.backward(np.ones((4, 3), np.float32))
    m.zero_grad()
    assert all(not p.grad.any() for p in m.parameters())
    arena = m.flatten_parameters()
    arena.grad[:] = 3
    m.zero_grad()
    assert not arena.grad.any()


def test_param_grads_accumulate_and_input_grads_are_fresh():
    m = nn.Linear(4, 3)
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    g = np.ones((5, 3), np.float32)
    m(x)
    gx1 = m.backward(g)
    w1 = m.weight.grad.copy()
    m(x)
    gx2 = m.backward(g)
    assert_close(m.weight.grad, 2 * w1, rtol=1e-6, name="accumulated")
    assert gx1 is not gx2 and np.array_equal(gx1, gx2)


def test_held_outputs_are_never_overwritten():
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((6, 4)).astype(np.float32) for _ in range(4)]
    kept = [m(x) for x in xs]  # e.g. predictions collected batch by batch
    for x, y in zip(xs, kept):
        ref = np.maximum(x @ m[0].weight.data.T + m[0].bias.data, 0) @ m[2].weight.data.T + m[2].bias.data
        assert_close(y, ref, rtol=1e-5, atol=1e-6, name="kept output")
    # ... while a loop that drops its outputs reuses the intermediate buffers
    m(xs[0])
    first = m[0]._scratch["y"][0]
    for x in xs:
        m(x)
    assert any(b is first for b in m[0]._scratch["y"])


def test_to_and_double():
    m = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    m.double()
    assert all(p.dtype == np.float64 for p in m.parameters())
    assert m[1].running_mean.dtype == np.float64 and m[1].num_batches_tracked.dtype == np.int64
    m.float()
    assert all(p.dtype == np.float32 for p in m.parameters())
    if not fusetrain.cuda_available():
        with pytest.raises(RuntimeError, match="cuda_available"):
            m.to("cuda")
    with pytest.raises(ValueError, match="device"):
        m.to("tpu")


def test_wrong_shapes_between_layers_name_the_layer():
    m = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(7, 2))
    with pytest.raises(ValueError, match=r"Sequential layer 2 \(Linear\).*\(\*, 7\).*\(4, 8\)"):
        m(np.ones((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm1d.*C=3.*\(4, 5\)"):
        nn.BatchNorm1d(3)(np.ones((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm2d.*\(N, C, H, W\)"):
        nn.BatchNorm2d(3)(np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"LayerNorm.*\(\*, 6\)"):
        nn.LayerNorm(6)(np.ones((4, 5), np.float32))
    with pytest.raises(ValueError, match="Residual"):
        nn.Residual(nn.Linear(4, 3))(np.ones((2, 4), np.float32))
    with pytest.raises(RuntimeError, match="before forward"):
        nn.Linear(2, 2).backward(np.ones((1, 2), np.float32))


def test_wrong_dtypes():
    with pytest.raises(TypeError, match=r"float32 input.*float64"):
        nn.Linear(3, 2)(np.ones((2, 3)))
    with pytest.raises(TypeError, match="Sequential layer 0"):
        nn.Sequential(nn.Linear(3, 2))(np.ones((2, 3), np.int64))
    with pytest.raises(TypeError, match="floating"):
        nn.ReLU()(np.ones(3, np.int32))
    with pytest.raises(TypeError, match="labels"):
        nn.CrossEntropyLoss()(np.ones((2, 3), np.float32), np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="floating"):
        nn.Parameter(np.ones(2), dtype=np.int32)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan")])
def test_dropout_p_validated(p):
    with pytest.raises(ValueError, match="p must"):
        nn.Dropout(p)


def test_repr_reads_like_torch():
    m = nn.Sequential(nn.Linear(4, 3), nn.Residual(nn.Sequential(nn.LayerNorm(3), nn.Tanh())),
                      nn.Concat(nn.Identity(), nn.LeakyReLU(0.1)), nn.Dropout(0.2))
    text = repr(m)
    assert "(0): Linear(in_features=4, out_features=3, bias=True)" in text
    assert "(block): Sequential(" in text and "LayerNorm((3,), eps=1e-05, elementwise_affine=True)" in text
    assert "LeakyReLU(negative_slope=0.1)" in text and "Dropout(p=0.2)" in text and "Concat(dim=1" in text


def test_sequential_container_protocol():
    a, b = nn.Linear(2, 3), nn.ReLU()
    s = nn.Sequential(a, b)
    assert len(s) == 2 and s[0] is a and s[-1] is b and list(s) == [a, b]
    s.append(nn.Linear(3, 1))
    assert len(s) == 3 and list(s.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert isinstance(s[1:], nn.Sequential) and len(s[1:]) == 2
    with pytest.raises(IndexError):
        s[3]
    ml = nn.ModuleList([nn.Linear(1, 1), nn.Linear(1, 2)])
    assert list(ml.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"] and len(ml) == 2


# ---------------------------------------------------------------- init


def test_init_names_and_aliases():
    assert init.get("glorot_uniform") is init.xavier_uniform_ is init.get("xavier_uniform")
    assert init.get("he_normal") is init.kaiming_normal_ and init.get("he_uniform") is init.kaiming_uniform_
    assert init.get("lecun_normal") is init.lecun_normal_ and init.get("gaussian") is init.gaussian_
    assert init.get("Glorot_Normal") is init.xavier_normal_ and init.get("zeros") is init.zeros_
    fn = lambda a: a  # noqa: E731
    assert init.get(fn) is fn
    with pytest.raises(ValueError, match="unknown init 'glorot'.*he_normal"):
        init.get("glorot")
    with pytest.raises(ValueError, match="unknown init"):
        nn.Linear(3, 3, init="bogus")


@pytest.mark.parametrize("name, std_of", [
    ("kaiming_normal", lambda fi, fo: math.sqrt(2.0 / (1 + 0.0)) / math.sqrt(fi)),
    ("kaiming_uniform", lambda fi, fo: math.sqrt(2.0) / math.sqrt(fi)),
    ("xavier_normal", lambda fi, fo: math.sqrt(2.0 / (fi + fo))),
    ("xavier_uniform", lambda fi, fo: math.sqrt(2.0 / (fi + fo))),
    ("lecun_normal", lambda fi, fo: 1 / math.sqrt(fi)),
    ("gaussian", lambda fi, fo: 1.0 / fi),
])
def test_init_statistics(name, std_of):
    w = np.empty((300, 40, 3), np.float32)  # conv-like weight: fan_in = 120, fan_out = 900
    init.get(name)(w)
    std = std_of(120, 900)
    assert abs(w.std() / std - 1) < 0.02 and abs(w.mean()) < 0.02 * std
    if "uniform" in name:
        assert np.abs(w).max() <= math.sqrt(3) * std * (1 + 1e-6)


def test_init_is_reproducible_and_writes_in_place():
    fusetrain.manual_seed(5)
    a = nn.Linear(7, 5, init="he_normal")
    fusetrain.manual_seed(5)
    b = nn.Linear(7, 5, init="he_normal")
    assert np.array_equal(a.weight.data, b.weight.data) and not a.bias.data.any()
    p = nn.Parameter(np.zeros((3, 3)))
    data = p.data
    init.ones_(p)
    init.constant_(data, 2.0)
    assert p.data is data and np.all(data == 2)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(np.zeros(3))


def test_default_linear_init_matches_torch_bounds_and_gain():
    torch = pytest.importorskip("torch")
    for nl, param in (("relu", None), ("tanh", None), ("leaky_relu", 0.2), ("sigmoid", None), ("selu", None)):
        assert math.isclose(init.calculate_gain(nl, param), torch.nn.init.calculate_gain(nl, param))
    for shape in ((5, 3), (4, 3, 2, 2), (6, 2, 7)):
        fi, fo = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
        assert init._fans(np.empty(shape)) == (fi, fo)
    m = nn.Linear(50, 400)
    bound = 1 / math.sqrt(50)  # kaiming_uniform(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert np.abs(m.weight.data).max() <= bound and np.abs(m.weight.data).max() > 0.95 * bound
    assert np.abs(m.bias.data).max() <= bound


# ---------------------------------------------------------------- clipping


def test_clip_grad_norm_and_value_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(s).astype(np.float32) for s in ((7, 3), (1,), (5,))]
    for norm_type, max_norm in ((2.0, 0.5), (1.0, 2.0), (float("inf"), 0.3), (2.0, 100.0)):
        ps = [nn.Parameter(np.zeros(g.shape)) for g in grads]
        ts = [torch.nn.Parameter(torch.zeros(g.shape)) for g in grads]
        for p, t, g in zip(ps, ts, grads):
            p.grad = g
            t.grad = torch.from_numpy(g.copy())
        total = nn.utils.clip_grad_norm_(ps, max_norm, norm_type)
        ttotal = torch.nn.utils.clip_grad_norm_(ts, max_norm, norm_type)
        assert math.isclose(total, float(ttotal), rel_tol=1e-6)
        for p, t in zip(ps, ts):
            assert_close(p.grad, t.grad.numpy(), rtol=1e-6, atol=1e-7, name="clipped")
    ps = [nn.Parameter(np.zeros(g.shape)) for g in grads]
    for p, g in zip(ps, grads):
        p.grad = g
    nn.utils.clip_grad_value_(ps, 0.4)
    for p, g in zip(ps, grads):
        assert_close(p.grad, np.clip(g, -0.4, 0.4), name="clamped")
    ps[0].grad[0, 0] = np.nan
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_(ps, 1.0, error_if_nonfinite=True)


def test_vector_helpers():
    m = nn.Linear(3, 2)
    v = nn.utils.parameters_to_vector(m.parameters())
    assert v.shape == (8,)
    nn.utils.vector_to_parameters(v * 0 + 1, m.parameters())
    assert np.all(m.weight.data == 1) and np.all(m.bias.data == 1)


def test_weight_norm_removal_restores_weight():
    m = nn.utils.weight_norm(nn.Linear(3, 2))
    m.weight_g.data *= 2
    x = np.ones((1, 3), np.float32)
    y = m(x).copy()
    nn.utils.remove_weight_norm(m)
    assert [n for n, _ in m.named_parameters()] == ["bias", "weight"]
    assert_close(m(x), y, rtol=1e-6, name="same function")


@pytest.mark.parametrize("fin,fout", [(0, 5), (5, 0), (0, 0)])
@pytest.mark.parametrize("backend", ["fused", "numpy"])
def test_linear_with_zero_features_matches_torch(fin, fout, backend):
    torch = pytest.importorskip("torch")
    with fusetrain.backend.use_backend(backend):
        lin = nn.Linear(fin, fout)
        assert lin.weight.shape == (fout, fin)
        np.testing.assert_array_equal(lin.bias.data, 0.0)  # U(-1/sqrt(0), ...) is U(0, 0), as in torch
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch: "Initializing zero-element tensors is a no-op"
            tlin = torch.nn.Linear(fin, fout).double() if fin else None
        x = np.random.default_rng(0).standard_normal((2, 3, fin)).astype(np.float32)
        lin.bias.data[...] = np.arange(fout)
        y = lin(x)
        expected = np.broadcast_to(np.arange(fout, dtype=np.float64), (2, 3, fout)) if fin == 0 else None
        if tlin is not None:
            with torch.no_grad():
                tlin.weight.copy_(torch.tensor(lin.weight.data))
                tlin.bias.copy_(torch.tensor(lin.bias.data))
            tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
            ty = tlin(tx)
            expected = ty.detach().numpy()
        assert_close(y, expected, rtol=1e-6, atol=1e-6, name="y")
        g = np.ones(y.shape, np.float32)
        gx = lin.backward(g)
        assert gx.shape == x.shape
        if tlin is not None:
            ty.backward(torch.tensor(g, dtype=torch.float64))
            assert_close(gx, tx.grad.numpy(), rtol=1e-6, atol=1e-6, name="dx")
        assert_close(lin.bias.grad, np.full(fout, 6.0), rtol=0, atol=0, name="bias grad")
        assert lin.weight.grad.shape == (fout, fin)
        lin.eval()
        assert_close(lin(x), expected, rtol=1e-6, atol=1e-6, name="eval y")
        model = nn.Sequential(nn.Linear(4, fin), nn.ReLU(), nn.Linear(fin, fout), nn.Linear(fout, 2))
        opt = fusetrain.optim.SGD(model.parameters(), lr=0.1)
        out = model(np.ones((3, 4), np.float32))
        model.backward(np.ones_like(out))
        opt.step()
        assert out.shape == (3, 2) and np.isfinite(out).all()


def test_clip_grad_norm_of_a_nan_gradient_spreads_the_nan_as_torch_does():
    torch = pytest.importorskip("torch")
    grads = [np.array([1.0, np.nan, 3.0], np.float32), np.array([10.0, 10.0], np.float32)]
    ours = [nn.Parameter(np.zeros_like(g)) for g in grads]
    theirs = [torch.nn.Parameter(torch.zeros(len(g))) for g in grads]
    for p, t, g in zip(ours, theirs, grads):
        p.grad[...] = g
        t.grad = torch.from_numpy(g.copy())
    total = nn.utils.clip_grad_norm_(ours, 1.0)
    t_total = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    assert np.isnan(total) and torch.isnan(t_total)
    for p, t in zip(ours, theirs):
        assert np.array_equal(np.isnan(p.grad), torch.isnan(t.grad).numpy())


def test_clip_grad_norm_takes_the_string_inf_as_torch_does():
    torch = pytest.importorskip("torch")
    g = np.array([3.0, -4.0], np.float32)
    p, t = nn.Parameter(np.zeros(2, np.float32)), torch.nn.Parameter(torch.zeros(2))
    p.grad[...], t.grad = g, torch.from_numpy(g.copy())
    assert nn.utils.clip_grad_norm_([p], 1.0, norm_type="inf") == pytest.approx(
        float(torch.nn.utils.clip_grad_norm_([t], 1.0, norm_type="inf")))
    assert np.allclose(p.grad, t.grad.numpy())


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_])
def test_init_refuses_an_array_that_is_not_floating_point_and_changes_nothing(dtype):
    a = np.zeros((3, 4), dtype)
    with pytest.raises(TypeError, match=f"init functions fill floating-point arrays, got {np.dtype(dtype)}"):
        nn.init.kaiming_uniform_(a)
    assert not a.any()


def test_register_refuses_names_torch_refuses_and_changes_nothing():
    lin = nn.Linear(2, 2)
    params = dict(lin.named_parameters())
    cases = [
        (lambda: lin.register_buffer("weight", np.zeros((2, 2), np.float32)), "attribute 'weight' already exists"),
        (lambda: lin.register_buffer("forward", np.zeros(2, np.float32)), "attribute 'forward' already exists"),
        (lambda: lin.register_parameter("bias_", None) or lin.register_buffer("bias_", None),
         "attribute 'bias_' already exists"),
        (lambda: lin.add_module("a.b", nn.ReLU()), 'must not contain "."'),
        (lambda: lin.add_module("", nn.ReLU()), "must not be empty"),
        (lambda: lin.register_parameter("x.y", None), 'must not contain "."'),
    ]
    for call, message in cases:
        with pytest.raises(KeyError, match=message):
            call()
    lin.__dict__["_parameters"].pop("bias_", None)
    assert dict(lin.named_parameters()) == params and not list(lin.named_buffers()) and not list(lin.children())
    lin.plain = 3
    with pytest.raises(KeyError, match="attribute 'plain' already exists"):
        lin.register_parameter("plain", nn.Parameter(np.zeros(1, np.float32)))
    assert lin.plain == 3
    lin.register_buffer("stat", np.zeros(2, np.float32))
    lin.register_buffer("stat", np.ones(2, np.float32))  # re-registering a buffer replaces it, as torch does
    assert lin.stat.sum() == 2


def test_children_and_buffers_are_listed_once_as_torch_lists_them():
    torch = pytest.importorskip("torch")
    lin, tlin = nn.Linear(3, 3), torch.nn.Linear(3, 3)
    ours, theirs = nn.Sequential(lin, nn.ReLU(), lin), torch.nn.Sequential(tlin, torch.nn.ReLU(), tlin)
    assert [n for n, _ in ours.named_children()] == [n for n, _ in theirs.named_children()] == ["0", "1"]
    m = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    tm = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    a, ta = np.zeros(3, np.float32), torch.zeros(3)
    for i in range(2):
        m[i].register_buffer("b", a)
        tm[i].register_buffer("b", ta)
    assert [n for n, _ in m.named_buffers()] == [n for n, _ in tm.named_buffers()] == ["0.b"]
