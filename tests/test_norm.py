"""Global norm (deterministic, double accumulation), clipping helpers and non-finite counting."""
import math

import numpy as np
import pytest

from fusetrain import _core, ops
from testutils import assert_close, torch_or_skip


def _arrays(seed=0, sizes=(0, 1, 7, 278011, 65536 * 3 + 5)):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(n) * rng.uniform(0.1, 10)).astype(np.float32) for n in sizes]


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
def test_global_norm_matches_float64(norm_type):
    arrs = _arrays()
    got = ops.global_norm(arrs, norm_type)
    flat = np.concatenate([a.astype(np.float64) for a in arrs])
    expect = np.max(np.abs(flat)) if math.isinf(norm_type) else np.sum(np.abs(flat) ** norm_type) ** (1 / norm_type)
    assert abs(got - expect) <= 1e-12 * expect


def test_global_norm_bitwise_deterministic_across_threads_and_runs():
    arrs = _arrays(seed=5)
    before = _core.num_threads()
    try:
        results = set()
        for threads in (1, 2, 3):
            _core.set_num_threads(threads)
            for _ in range(3):
                results.add(ops.global_norm(arrs).hex())
        assert len(results) == 1, results
    finally:
        _core.set_num_threads(before)


def test_global_norm_matches_torch_clip_grad_norm():
    torch = torch_or_skip()
    arrs = _arrays(seed=9, sizes=(17, 1000, 4099))
    params = []
    for a in arrs:
        p = torch.nn.Parameter(torch.zeros(a.size))
        p.grad = torch.tensor(a.copy())
        params.append(p)
    total = torch.nn.utils.clip_grad_norm_(params, max_norm=1.0)
    mine = ops.global_norm(arrs)
    assert abs(mine - float(total)) <= 2e-6 * mine
    coef = ops.clip_coef(mine, 1.0)
    ops.scale_(arrs, coef)
    for a, p in zip(arrs, params):
        assert_close(a, p.grad.numpy(), rtol=1e-6, atol=1e-7)


def test_empty_and_zero_norms():
    assert ops.global_norm([np.zeros(0, np.float32)]) == 0.0
    assert ops.global_norm([np.zeros(5, np.float32)]) == 0.0
    assert ops.clip_coef(0.0, 1.0) == 1.0


def test_nan_propagates_to_norm_and_is_counted():
    a = np.ones(100000, np.float32)
    a[77777] = np.nan
    a[5] = np.inf
    assert math.isnan(ops.global_norm([a]))
    assert math.isnan(ops.global_norm([a], float("inf")))
    assert ops.count_nonfinite([a, np.ones(3, np.float32)]) == 2


def test_clamp_and_scale():
    rng = np.random.default_rng(1)
    a = (rng.standard_normal(70001) * 3).astype(np.float32)
    expect = np.clip(a.astype(np.float64), -0.5, 0.5)
    b = a.copy()
    ops.clamp_([b], 0.5)
    assert_close(b, expect, rtol=0, atol=0)
    ops.scale_(b, 3.0)
    assert_close(b, expect * 3.0, rtol=1e-7, atol=0)


def test_bad_norm_arguments():
    a = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="norm_type must be > 0.0"):
        ops.global_norm([a], 0.0)
    with pytest.raises(ValueError, match="clip_value must be >= 0.0"):
        ops.clamp_([a], -1.0)
    with pytest.raises(TypeError, match=r"arrays\[0\] must have dtype float32"):
        ops.global_norm([a.astype(np.float16)])
