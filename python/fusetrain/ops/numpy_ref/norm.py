"""NumPy twins of the global gradient norm."""
from __future__ import annotations

import math

import numpy as np


def pow_sum(x, norm_type):
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size == 0:
        return 0.0
    if math.isinf(norm_type):
        return float(np.max(np.abs(x)))
    if norm_type == 2.0:
        return float(np.dot(x, x))
    return float(np.sum(np.abs(x) ** norm_type))


def global_norm(arrays, norm_type=2.0):
    sums = [pow_sum(a, norm_type) for a in arrays]
    if math.isinf(norm_type):
        return max(sums, default=0.0)
    total = sum(sums)
    return total ** (1.0 / norm_type)
