"""Mini-batching: a generator over (x, y) batches and a small DataLoader around it."""
from __future__ import annotations

import numpy as np

from ..ops import _check


def _check_xy(x, y):
    x = np.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"x must have a sample axis, got a scalar of shape {x.shape}")
    if y is not None:
        y = np.asarray(y)
        if len(y) != len(x):
            raise ValueError(f"x and y must have the same number of samples, got {len(x)} and {len(y)}")
    return x, y


def batches(x, y=None, batch_size=32, shuffle=False, rng=None, drop_last=False):
    """Yield ``(x_batch, y_batch)`` (or ``x_batch`` when y is None) in order, or in a random
    order drawn from ``rng`` (a numpy Generator or an int seed; fusetrain's default generator
    when None) when ``shuffle``. Unshuffled batches are views; shuffled ones are copies.
    The last, smaller batch is kept unless ``drop_last``."""
    x, y = _check_xy(x, y)
    batch_size = _check.integer(batch_size, "batch_size", lo=1)
    n = len(x)
    order = None
    if shuffle:
        if rng is None:
            from .. import random as frandom
            rng = frandom.default_generator()
        elif not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        order = rng.permutation(n)
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        sl = slice(i, min(i + batch_size, n))
        if order is None:
            xb, yb = x[sl], (None if y is None else y[sl])
        else:
            idx = order[sl]
            xb, yb = x[idx], (None if y is None else y[idx])
        yield xb if y is None else (xb, yb)


class DataLoader:
    """Re-iterable batches of (x, y): each ``iter()`` is one epoch (a fresh shuffle when
    ``shuffle``, from its own generator seeded by ``seed``, or without a seed from fusetrain's
    default generator, which ``fusetrain.manual_seed`` seeds, as torch's DataLoader does)."""

    def __init__(self, x, y=None, batch_size=32, shuffle=False, seed=None, drop_last=False):
        self.x, self.y = _check_xy(x, y)
        self.batch_size = _check.integer(batch_size, "batch_size", lo=1)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.rng = None if seed is None else np.random.default_rng(seed)

    def __len__(self):
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        return batches(self.x, self.y, self.batch_size, self.shuffle, self.rng, self.drop_last)
