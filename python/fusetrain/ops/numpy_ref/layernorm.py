"""NumPy twin of layer normalization over the rows of (N, D)."""
from __future__ import annotations

import numpy as np


def layernorm_forward(x2, w, b, eps):
    mean = x2.mean(axis=1)
    var = x2.var(axis=1)
    rstd = 1.0 / np.sqrt(var + eps)
    y = (x2 - mean[:, None]) * rstd[:, None]
    if w is not None:
        y = y * w + b
    return y.astype(x2.dtype, copy=False), mean.astype(x2.dtype), rstd.astype(x2.dtype)


def layernorm_backward(dy2, x2, w, mean, rstd):
    D = x2.shape[1]
    xhat = (x2 - mean[:, None]) * rstd[:, None]
    dw = (dy2 * xhat).sum(axis=0)
    db = dy2.sum(axis=0)
    g = dy2 * w if w is not None else dy2
    dx = rstd[:, None] / D * (D * g - g.sum(axis=1, keepdims=True) - xhat * (g * xhat).sum(axis=1, keepdims=True))
    return dx.astype(x2.dtype, copy=False), dw, db
