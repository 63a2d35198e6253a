"""Keep inputs in a reasonable range: min-max scaling and per-feature standardization, both
returning what is needed to apply the same transform to test data."""
from __future__ import annotations

import numpy as np


def scale(x, lo=0.0, hi=1.0, data_min=None, data_max=None):
    """Map values linearly from [data_min, data_max] (default: x's own min and max) to [lo, hi],
    e.g. [0, 1] or [-1, 1]. Returns float32 (float64 input stays float64). Pass the training
    set's min/max to transform test data the same way. A constant input maps to ``lo``."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise TypeError(f"scale expects a numeric array, got dtype {x.dtype}")
    lo, hi = float(lo), float(hi)
    if not hi > lo:
        raise ValueError(f"scale needs hi > lo, got lo={lo}, hi={hi}")
    dtype = np.float64 if x.dtype == np.float64 else np.float32
    if x.size == 0:
        return x.astype(dtype)
    mn = float(np.min(x)) if data_min is None else float(data_min)
    mx = float(np.max(x)) if data_max is None else float(data_max)
    if mx < mn:
        raise ValueError(f"data_max must be >= data_min, got data_min={mn}, data_max={mx}")
    span = mx - mn
    f = (hi - lo) / span if span > 0 else 0.0
    return ((x.astype(np.float64) - mn) * f + lo).astype(dtype)


def standardize(x, mean=None, std=None, axis=0, eps=1e-8):
    """(x - mean) / (std + eps) per feature (statistics over ``axis``, the sample axis by
    default). Returns ``(x_standardized, mean, std)``; pass the training set's mean and std
    to standardize test data identically. Output is float32 (float64 input stays float64)."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise TypeError(f"standardize expects a numeric array, got dtype {x.dtype}")
    dtype = np.float64 if x.dtype == np.float64 else np.float32
    x64 = x.astype(np.float64)
    if (mean is None) != (std is None):
        raise ValueError("standardize: pass both mean and std (from the training data) or neither")
    if mean is None:
        if x.shape[axis] == 0:
            raise ValueError("standardize: cannot compute statistics of an empty array")
        mean = x64.mean(axis=axis, keepdims=True)
        std = x64.std(axis=axis, keepdims=True)
    mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    if np.any(std < 0):
        raise ValueError("standardize: std must be non-negative")
    out = ((x64 - mean) / (std + eps)).astype(dtype)
    return out, mean.astype(dtype), std.astype(dtype)
