"""Optimizers against torch.optim over many steps (every option, param groups, max_grad_norm vs
clip_grad_norm_ + step, lr changes), bit-for-bit resume from state_dict, arena layout, and
hyper-parameter validation."""
import numpy as np
import pytest

from fusetrain import nn, optim
from testutils import assert_close

SHAPES = [(13, 7), (7,), (1,), (3, 1, 5)]


def _values(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in SHAPES]


def _grads(rng):
    return [rng.standard_normal(s).astype(np.float32) * 3 for s in SHAPES]


CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.1)),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.01, initial_accumulator_value=0.2, eps=1e-6)),
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=0.01, alpha=0.9, centered=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.7, weight_decay=0.05)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True, eps=1e-4)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True, eps=1e-6)),
    ("AdamW", dict()),
    ("AdamW", dict(lr=0.01, weight_decay=0.3, amsgrad=True)),
]


def _run_pair(torch, name, kw, *, steps=12, clip=None, groups=False, lr_change=False, seed=1):
    vals = _values()
    ps = [nn.Parameter(v) for v in vals]
    ts = [torch.nn.Parameter(torch.from_numpy(v.copy())) for v in vals]
    if groups:  # second group: its own lr and no weight decay
        mk = lambda P: [{"params": P[:2]}, {"params": P[2:], "lr": kw.get("lr", 1e-2) * 3, "weight_decay": 0.0}]
        ours, theirs = mk(ps), mk(ts)
    else:
        ours, theirs = ps, ts
    o = getattr(optim, name)(ours, **kw, max_grad_norm=clip)
    to = getattr(torch.optim, name)(theirs, **kw)
    rng = np.random.default_rng(seed)
    for step in range(steps):
        if lr_change and step == steps // 2:
            for g, tg in zip(o.param_groups, to.param_groups):
                g["lr"] *= 0.5
                tg["lr"] *= 0.5
        for p, t, g in zip(ps, ts, _grads(rng)):
            p.grad = g
            t.grad = torch.from_numpy(g.copy())
        if clip is not None:
            tn = float(torch.nn.utils.clip_grad_norm_(ts, clip))
        o.step()
        to.step()
        if clip is not None:
            assert abs(o.last_grad_norm - tn) <= 1e-5 * tn
    for i, (p, t) in enumerate(zip(ps, ts)):
        assert_close(p.data, t.detach().numpy(), rtol=2e-5, atol=2e-6, name=f"{name} param {i}")


@pytest.mark.parametrize("name, kw", CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CONFIGS)])
def test_matches_torch(name, kw):
    torch = pytest.importorskip("torch")
    _run_pair(torch, name, kw)


@pytest.mark.parametrize("name, kw", [CONFIGS[2], CONFIGS[5], CONFIGS[9], CONFIGS[12], CONFIGS[14]],
                         ids=["SGD", "Adagrad", "RMSprop", "Adam", "AdamW"])
def test_groups_clipping_and_lr_changes_match_torch(name, kw):
    torch = pytest.importorskip("torch")
    _run_pair(torch, name, kw, groups=True, lr_change=True)
    _run_pair(torch, name, kw, clip=0.7)
    _run_pair(torch, name, kw, clip=1e3)  # above the norm: no clipping


def test_max_grad_norm_equals_clip_then_step():
    for name, kw in (CONFIGS[2], CONFIGS[14]):
        a = [nn.Parameter(v) for v in _values()]
        b = [nn.Parameter(v) for v in _values()]
        oa = getattr(optim, name)(a, **kw, max_grad_norm=0.5)
        ob = getattr(optim, name)(b, **kw)
        rng = np.random.default_rng(3)
        for _ in range(8):
            for p, q, g in zip(a, b, _grads(rng)):
                p.grad = g
                q.grad = g
            norm = nn.utils.clip_grad_norm_(b, 0.5)
            oa.step()
            ob.step()
            assert oa.last_grad_norm == norm
        for p, q in zip(a, b):
            assert_close(p.data, q.data, rtol=1e-6, atol=1e-7, name=name)


def test_step_reuses_a_given_grad_norm_bit_for_bit():
    # The Trainer computes the norm for its non-finite check and hands it to step(): the update must
    # be exactly the one step() makes when it computes the norm itself.
    name, kw = CONFIGS[14]
    a = [nn.Parameter(v) for v in _values()]
    b = [nn.Parameter(v) for v in _values()]
    oa = getattr(optim, name)(a, **kw, max_grad_norm=0.5)
    ob = getattr(optim, name)(b, **kw, max_grad_norm=0.5)
    rng = np.random.default_rng(4)
    for _ in range(5):
        for p, q, g in zip(a, b, _grads(rng)):
            p.grad = g
            q.grad = g
        norm = oa.grad_norm()
        oa.step(grad_norm=norm)
        ob.step()
        assert oa.last_grad_norm == ob.last_grad_norm == norm
    for p, q in zip(a, b):
        assert np.array_equal(p.data, q.data)


def _checkpointed_run(name, kw, total, resume_at=None):
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3))
    model.load_state_dict({k: v for k, v in _ref_model_state().items()})
    decay = [p for n, p in model.named_parameters() if n.endswith("weight")]
    rest = [p for n, p in model.named_parameters() if not n.endswith("weight")]
    groups = [{"params": decay}, {"params": rest, "weight_decay": 0.0}]
    o = getattr(optim, name)(groups, **kw, max_grad_norm=1.0)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((6, 5)).astype(np.float32), rng.integers(0, 3, 6)) for _ in range(total)]
    start = 0
    if resume_at is not None:
        for x, y in batches[:resume_at]:
            o.zero_grad()
            loss_fn(model(x), y)
            model.backward(loss_fn.backward())
            o.step()
        msd, osd = model.state_dict(), o.state_dict()
        model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3))
        model.load_state_dict(msd)
        decay = [p for n, p in model.named_parameters() if n.endswith("weight")]
        rest = [p for n, p in model.named_parameters() if not n.endswith("weight")]
        o = getattr(optim, name)([{"params": decay}, {"params": rest, "weight_decay": 0.0}], **kw, max_grad_norm=1.0)
        o.load_state_dict(osd)
        start = resume_at
    for x, y in batches[start:]:
        o.zero_grad()
        loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        o.step()
    return model.state_dict()


_REF = {}


def _ref_model_state():
    if not _REF:
        _REF.update(nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3)).state_dict())
    return _REF


@pytest.mark.parametrize("name, kw", [CONFIGS[3], CONFIGS[5], CONFIGS[9], CONFIGS[12], CONFIGS[14]],
                         ids=["SGD", "Adagrad", "RMSprop", "Adam", "AdamW"])
def test_resume_from_state_dict_is_bit_for_bit(name, kw):
    full = _checkpointed_run(name, kw, 10)
    resumed = _checkpointed_run(name, kw, 10, resume_at=4)
    for k in full:
        np.testing.assert_array_equal(resumed[k], full[k], err_msg=k)


def test_state_dict_holds_only_arrays_and_scalars():
    p = nn.Parameter(np.ones(3))
    o = optim.Adam([p], amsgrad=True)
    p.grad = np.ones(3, np.float32)
    o.step()
    sd = o.state_dict()
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert sd["state"][0]["step"] == 1 and isinstance(sd["state"][0]["exp_avg"], np.ndarray)
    assert sd["param_groups"][0]["betas"] == [0.9, 0.999] and sd["param_groups"][0]["params"] == [0]
    sd["state"][0]["exp_avg"][:] = 5  # a copy, not the live state
    assert o.state[0]["exp_avg"][0] != 5
    o2 = optim.Adam([nn.Parameter(np.ones(4))])
    with pytest.raises(ValueError, match="4"):
        o2.load_state_dict(o.state_dict())


def test_normalized_sgd_uses_gradient_direction():
    vals = _values()
    ps = [nn.Parameter(v) for v in vals]
    o = optim.NormalizedSGD(ps, lr=0.1)
    rng = np.random.default_rng(2)
    for _ in range(3):
        gs = _grads(rng)
        ref = [p.data.astype(np.float64) for p in ps]
        norm = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in gs))
        for p, g in zip(ps, gs):
            p.grad = g
        o.step()
        for p, r, g in zip(ps, ref, gs):
            assert_close(p.data, r - 0.1 * g / norm, rtol=1e-5, atol=1e-6, name="normalized step")
        assert abs(o.last_grad_norm - norm) < 1e-6 * norm


def test_params_share_one_arena_and_zero_grad_is_one_fill():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    arena = model.flatten_parameters()
    params = list(model.parameters())
    o = optim.SGD(params, lr=0.1)
    assert all(p._arena is arena for p in params)  # the model's arena was reused
    assert o._segments[0].data.size == arena.size
    arena.grad[:] = 1
    o.zero_grad()
    assert not arena.grad.any()
    # groups that interleave the model's arena get re-packed into one arena of consecutive segments
    o2 = optim.SGD([{"params": [params[0], params[2]]}, {"params": [params[1], params[3]], "lr": 0.0}], lr=0.1)
    new = params[0]._arena
    assert new is not arena and all(p._arena is new for p in params)
    x = np.ones((2, 4), np.float32)
    model(x)
    model.backward(np.ones((2, 2), np.float32))
    before = [p.data.copy() for p in params]
    o2.step()
    assert not np.array_equal(before[0], params[0].data) and np.array_equal(before[1], params[1].data)
    # the first optimizer notices the re-packing and still updates the live parameters
    o.step()
    assert not np.array_equal(before[1], params[1].data)


def test_standalone_parameter_and_grad_assignment():
    p = nn.Parameter(np.arange(6.0).reshape(2, 3))
    assert p.dtype == np.float32 and not p.grad.any()
    o = optim.SGD([p], lr=0.5)
    g = p.grad
    p.grad = np.ones((2, 3))
    assert p.grad is g and p.grad.sum() == 6  # copied into the arena buffer
    p.grad *= 2
    o.step()
    assert_close(p.data, np.arange(6.0).reshape(2, 3) - 1.0, name="sgd step")
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        p.grad = np.ones(3)
    p.data = np.zeros((2, 3))
    assert p.data.base is not None and not p.data.any()


@pytest.mark.parametrize("make, match", [
    (lambda P: optim.SGD(P, lr=-0.1), "lr"),
    (lambda P: optim.SGD(P, lr=0.1, momentum=-1), "momentum"),
    (lambda P: optim.SGD(P, lr=0.1, nesterov=True), "nesterov"),
    (lambda P: optim.SGD(P, weight_decay=-1e-3), "weight_decay"),
    (lambda P: optim.Adam(P, betas=(1.0, 0.999)), r"betas\[0\]"),
    (lambda P: optim.Adam(P, betas=(0.9, -0.1)), r"betas\[1\]"),
    (lambda P: optim.AdamW(P, eps=-1e-8), "eps"),
    (lambda P: optim.Adagrad(P, lr_decay=-1), "lr_decay"),
    (lambda P: optim.RMSprop(P, alpha=-0.5), "alpha"),
    (lambda P: optim.Adam(P, max_grad_norm=0.0), "max_grad_norm"),
    (lambda P: optim.SGD([{"params": P, "lr": -1.0}]), "lr"),
    (lambda P: optim.SGD([], lr=0.1), "empty"),
    (lambda P: optim.SGD(P[0], lr=0.1), "iterable"),
    (lambda P: optim.SGD([{"params": P}, {"params": P[:1]}]), "more than one"),
    (lambda P: optim.SGD([np.ones(3)]), "Parameter"),
])
def test_bad_hyper_parameters(make, match):
    P = [nn.Parameter(np.ones(3)), nn.Parameter(np.ones(2))]
    with pytest.raises((ValueError, TypeError), match=match):
        make(P)


def test_add_param_group():
    a, b = nn.Parameter(np.ones(3)), nn.Parameter(np.ones(2))
    o = optim.SGD([a], lr=0.1, momentum=0.9)
    o.add_param_group({"params": [b], "lr": 1.0})
    a.grad = np.ones(3)
    b.grad = np.ones(2)
    o.step()
    assert_close(a.data, np.full(3, 0.9), name="group 0")
    assert_close(b.data, np.zeros(2), name="group 1")
    assert o.param_groups[1]["momentum"] == 0.9


def test_check_model_refuses_an_optimizer_of_other_parameters():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    other = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"updates 4 parameter\(s\) that are not parameters of the Sequential "
                                         r"\(the first: param_groups\[0\]\['params'\]\[0\], shape \(4, 3\)\)"):
        optim.SGD(other.parameters(), lr=0.1).check_model(model)
    mixed = optim.Adam([{"params": model[0].parameters()}, {"params": [other[2].bias]}])
    with pytest.raises(ValueError, match=r"updates 1 parameter\(s\).*param_groups\[1\]\['params'\]\[0\], shape \(2,\)"):
        mixed.check_model(model)
    head_only = optim.SGD(model[2].parameters(), lr=0.1)  # a subset of the model's own: fine
    head_only.check_model(model)
    model.to(dtype=np.float64)  # re-packed, still the same parameters
    head_only.check_model(model)
    optim.SGD(model.parameters(), lr=0.1).check_model(model)


def test_a_refused_param_group_leaves_the_optimizer_as_it_was():
    m = nn.Linear(3, 2)
    opt = optim.SGD(m.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="one dtype"):
        opt.add_param_group({"params": [nn.Parameter(np.zeros(4), dtype=np.float64)]})
    assert len(opt.param_groups) == 1 and len(opt.state_dict()["param_groups"]) == 1
    extra = nn.Parameter(np.ones(2, np.float32))
    opt.add_param_group({"params": [extra]})
    extra.grad[...] = 1
    opt.step()
    assert np.allclose(extra.data, 0.9)
