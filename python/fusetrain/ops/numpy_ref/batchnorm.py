"""NumPy twin of batch normalization over (N, C, S), with the fused ReLU and dropout."""
from __future__ import annotations

import numpy as np


def batchnorm_forward(x3, w, b, running_mean, running_var, *, training, momentum, eps, relu,
                      dropout_keep=None, dropout_p=0.0):
    """x3: (N, C, S). Returns y, mean, invstd (per channel)."""
    N, C, S = x3.shape
    if training:
        mean = x3.mean(axis=(0, 2))
        var = x3.var(axis=(0, 2))
        n = N * S
        if running_mean is not None:
            running_mean *= 1.0 - momentum
            running_mean += momentum * mean
            running_var *= 1.0 - momentum
            running_var += momentum * var * (n / (n - 1))
    else:
        mean, var = running_mean, running_var
    invstd = 1.0 / np.sqrt(var + eps)
    y = (x3 - mean[None, :, None]) * invstd[None, :, None]
    if w is not None:
        y = y * w[None, :, None] + b[None, :, None]
    if relu:
        y = np.maximum(y, 0)
    if dropout_keep is not None:
        y = y * dropout_keep.reshape(y.shape) / (1.0 - dropout_p)
    return y.astype(x3.dtype, copy=False), mean.astype(x3.dtype), invstd.astype(x3.dtype)


def batchnorm_backward(dy3, x3, y3, w, mean, invstd, *, training, relu, dropout_scale=1.0):
    N, C, S = x3.shape
    if relu:
        dy3 = np.where(y3 <= 0, 0, dy3 * dropout_scale)
    xhat = (x3 - mean[None, :, None]) * invstd[None, :, None]
    db = dy3.sum(axis=(0, 2))
    dw = (dy3 * xhat).sum(axis=(0, 2))
    wv = w if w is not None else np.ones(C, dtype=x3.dtype)
    if training:
        n = N * S
        dx = (wv * invstd)[None, :, None] / n * (n * dy3 - db[None, :, None] - xhat * dw[None, :, None])
    else:
        dx = dy3 * (wv * invstd)[None, :, None]
    return dx.astype(x3.dtype, copy=False), dw, db
