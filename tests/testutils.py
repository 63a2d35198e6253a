"""Shared test helpers: a comparison that says how many elements differ and where."""
from __future__ import annotations

import numpy as np


def assert_close(actual, expected, *, rtol=1e-5, atol=1e-6, name="value"):
    """Like numpy.testing.assert_allclose, but reports the count and first indices of mismatches
    and NaN/Inf disagreements separately. Non-finite values must match exactly: NaN with NaN,
    +inf with +inf, -inf with -inf."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{name}: shape {a.shape} != expected {e.shape}"
    nonfinite_a, nonfinite_e = ~np.isfinite(a), ~np.isfinite(e)
    both = nonfinite_a & nonfinite_e
    same = np.zeros(a.shape, dtype=bool)
    same[both] = (np.isnan(a[both]) & np.isnan(e[both])) | (a[both] == e[both])
    disagree = (nonfinite_a != nonfinite_e) | (both & ~same)
    if np.any(disagree):
        idx = [tuple(i) for i in np.argwhere(disagree)[:5].tolist()]
        details = ", ".join(f"{i}: {float(a[i])!r} vs {float(e[i])!r}" for i in idx)
        raise AssertionError(f"{name}: non-finite values disagree at {details}")
    fin = ~nonfinite_a
    bad = np.zeros(a.shape, dtype=bool)
    bad[fin] = np.abs(a[fin] - e[fin]) > atol + rtol * np.abs(e[fin])
    if bad.any():
        idx = np.argwhere(bad)[:5]
        worst = float(np.max(np.abs(a[fin] - e[fin])))
        details = ", ".join(f"{tuple(i)}: {a[tuple(i)]!r} vs {e[tuple(i)]!r}" for i in idx)
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {a.size} elements differ (rtol={rtol}, atol={atol}); "
            f"max abs diff {worst:.3g}; first: {details}")


def torch_or_skip():
    import pytest

    return pytest.importorskip("torch")


def classification_problem(n, d=13, k=5, seed=0):
    """A small linearly separable-ish problem: x (n, d) float32, labels (n,) int64 in [0, k)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(d, k))
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x @ w + 0.5 * rng.normal(size=(n, k))).argmax(1).astype(np.int64)
    return x, y
