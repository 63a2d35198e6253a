"""Learning-rate schedulers: get_last_lr() sequences equal torch.optim.lr_scheduler's, state_dict
resume continues the same sequence, and warm-up composes with plateau reduction."""
import math
import warnings

import numpy as np
import pytest

from fusetrain import nn, optim
from fusetrain.optim import lr_scheduler as S


def _opts(torch, lr=0.1, groups=2):
    ps = [nn.Parameter(np.ones(2)) for _ in range(groups)]
    ts = [torch.nn.Parameter(torch.ones(2)) for _ in range(groups)]
    ours = optim.SGD([{"params": [p], "lr": lr * (i + 1)} for i, p in enumerate(ps)], lr=lr)
    theirs = torch.optim.SGD([{"params": [t], "lr": lr * (i + 1)} for i, t in enumerate(ts)], lr=lr)
    return ours, theirs


CASES = [
    ("exp", lambda M, o: M.ExponentialLR(o, gamma=0.98)),
    ("step", lambda M, o: M.StepLR(o, step_size=3, gamma=0.5)),
    ("multistep", lambda M, o: M.MultiStepLR(o, milestones=[2, 5, 5, 11], gamma=0.3)),
    ("cosine", lambda M, o: M.CosineAnnealingLR(o, T_max=7, eta_min=1e-3)),
    ("cosine-long", lambda M, o: M.CosineAnnealingLR(o, T_max=4)),
    ("linear", lambda M, o: M.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=5)),
    ("linear-down", lambda M, o: M.LinearLR(o, start_factor=1.0, end_factor=0.2, total_iters=6)),
    ("sequential", lambda M, o: M.SequentialLR(o, [M.LinearLR(o, start_factor=0.25, total_iters=3),
                                                   M.CosineAnnealingLR(o, T_max=8, eta_min=0.01)], milestones=[3])),
    ("sequential-3", lambda M, o: M.SequentialLR(o, [M.LinearLR(o, start_factor=0.5, total_iters=2),
                                                     M.ExponentialLR(o, gamma=0.9),
                                                     M.StepLR(o, step_size=2, gamma=0.5)], milestones=[2, 6])),
]


@pytest.mark.parametrize("name, make", CASES, ids=[c[0] for c in CASES])
def test_sequence_matches_torch(name, make):
    torch = pytest.importorskip("torch")
    ours, theirs = _opts(torch)
    s, t = make(S, ours), make(torch.optim.lr_scheduler, theirs)
    assert np.allclose(s.get_last_lr(), t.get_last_lr(), rtol=1e-12, atol=0)
    for epoch in range(20):
        ours.step()
        theirs.step()
        s.step()
        t.step()
        assert np.allclose(s.get_last_lr(), t.get_last_lr(), rtol=1e-12, atol=1e-15), (epoch, s.get_last_lr(), t.get_last_lr())
        assert [g["lr"] for g in ours.param_groups] == s.get_last_lr()


@pytest.mark.parametrize("kw", [dict(), dict(mode="max", factor=0.5, patience=1, threshold=0.1, threshold_mode="abs"),
                                dict(patience=2, cooldown=2, min_lr=[0.02, 0.05], eps=1e-3),
                                dict(factor=0.2, patience=0, threshold_mode="rel", threshold=0.05)])
def test_plateau_matches_torch(kw):
    torch = pytest.importorskip("torch")
    ours, theirs = _opts(torch)
    s = S.ReduceLROnPlateau(ours, **kw)
    t = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs, **kw)
    metrics = [1.0, 0.9, 0.95, 0.95, 0.96, 0.89, 0.9, 0.9, 0.9, 0.9, 0.91, 0.5, 0.6, 0.6, 0.7, 0.7, 0.8] * 3
    for m in metrics:
        s.step(m)
        t.step(m)
        assert s.get_last_lr() == t.get_last_lr()
        assert s.num_bad_epochs == t.num_bad_epochs and s.best == t.best


def test_warmup_composes_with_plateau():
    torch = pytest.importorskip("torch")
    ours, theirs = _opts(torch)
    warm = S.ReduceLROnPlateau(ours, factor=0.5, patience=1, warmup_epochs=4, warmup_start_factor=0.2)
    twarm = torch.optim.lr_scheduler.LinearLR(theirs, start_factor=0.2, total_iters=4)
    assert np.allclose(warm.get_last_lr(), twarm.get_last_lr(), rtol=1e-12)
    for _ in range(4):
        ours.step()
        theirs.step()
        warm.step(123.0)  # metrics during warm-up are ignored
        twarm.step()
        assert np.allclose(warm.get_last_lr(), twarm.get_last_lr(), rtol=1e-12)
    assert np.allclose(warm.get_last_lr(), [0.1, 0.2], rtol=1e-12)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs, factor=0.5, patience=1)
    for g in theirs.param_groups:  # LinearLR's chained float products end within 1 ulp of base lr
        g["lr"] = g["initial_lr"]
    for m in [1.0, 1.0, 1.0, 0.5, 0.6, 0.7, 0.4]:
        warm.step(m)
        plateau.step(m)
        assert np.allclose(warm.get_last_lr(), plateau.get_last_lr(), rtol=1e-12)
    assert warm.get_last_lr()[0] < 0.1


@pytest.mark.parametrize("name, make", [CASES[3], CASES[7], CASES[2]], ids=["cosine", "sequential", "multistep"])
def test_state_dict_resume(name, make):
    ours = optim.SGD([nn.Parameter(np.ones(2))], lr=0.1)
    s = make(S, ours)
    full = []
    for _ in range(12):
        ours.step()
        s.step()
        full.append(s.get_last_lr())
    ours2 = optim.SGD([nn.Parameter(np.ones(2))], lr=0.1)
    s2 = make(S, ours2)
    for _ in range(5):
        s2.step()
    osd, ssd = ours2.state_dict(), s2.state_dict()
    assert all(not hasattr(v, "__dict__") for v in ssd.values())  # plain data only
    ours3 = optim.SGD([nn.Parameter(np.ones(2))], lr=0.1)
    s3 = make(S, ours3)
    ours3.load_state_dict(osd)
    s3.load_state_dict(ssd)
    rest = []
    for _ in range(7):
        s3.step()
        rest.append(s3.get_last_lr())
    assert rest == full[5:]


def test_lesson_exponential_decay():
    o = optim.SGD([nn.Parameter(np.ones(1))], lr=0.5)
    s = S.ExponentialLR(o, gamma=0.98)
    for _ in range(10):
        s.step()
    assert math.isclose(s.get_last_lr()[0], 0.5 * 0.98 ** 10, rel_tol=1e-12)


def test_bad_arguments():
    o = optim.SGD([nn.Parameter(np.ones(1))], lr=0.5)
    with pytest.raises(ValueError, match="step_size"):
        S.StepLR(o, step_size=0)
    with pytest.raises(ValueError, match="factor"):
        S.ReduceLROnPlateau(o, factor=1.5)
    with pytest.raises(ValueError, match="mode"):
        S.ReduceLROnPlateau(o, mode="up")
    with pytest.raises(TypeError, match="optimizer"):
        S.ExponentialLR(object(), gamma=0.9)
    with pytest.raises(ValueError, match="milestones"):
        S.SequentialLR(o, [S.ExponentialLR(o, 0.9), S.ExponentialLR(o, 0.9)], milestones=[])


def test_a_sequential_schedule_nested_in_another_matches_torch():
    torch = pytest.importorskip("torch")
    T = torch.optim.lr_scheduler
    warnings.simplefilter("ignore")  # torch warns of the scheduler steps its constructors take
    ours = optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    theirs = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    inner = S.SequentialLR(ours, [S.LinearLR(ours, 0.5, 1.0, 2), S.ExponentialLR(ours, 0.9)], [2])
    outer = S.SequentialLR(ours, [inner, S.StepLR(ours, 2, 0.5)], [6])
    t_inner = T.SequentialLR(theirs, [T.LinearLR(theirs, 0.5, 1.0, 2), T.ExponentialLR(theirs, 0.9)], [2])
    t_outer = T.SequentialLR(theirs, [t_inner, T.StepLR(theirs, 2, 0.5)], [6])
    for _ in range(12):
        assert math.isclose(outer.get_last_lr()[0], t_outer.get_last_lr()[0], rel_tol=1e-12)
        assert math.isclose(ours.param_groups[0]["lr"], theirs.param_groups[0]["lr"], rel_tol=1e-12)
        ours.step()
        theirs.step()
        outer.step()
        t_outer.step()
