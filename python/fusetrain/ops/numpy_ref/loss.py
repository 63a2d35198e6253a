"""NumPy twins of the losses."""
from __future__ import annotations

import numpy as np


def softmax_cross_entropy(logits, labels, *, reduction="mean"):
    """Returns (loss, dlogits) for integer labels; 'mean' or 'sum' reduction."""
    N = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    logp = z - np.log(s)
    total = -float(logp[np.arange(N), labels].sum()) if N else 0.0
    grad = e / s
    grad[np.arange(N), labels] -= 1.0
    if reduction == "mean":
        if N == 0:
            return float("nan"), grad
        grad /= N
        return total / N, grad.astype(logits.dtype, copy=False)
    return total, grad.astype(logits.dtype, copy=False)


def mse_loss(pred, target, grad_scale):
    """Returns (sum of squared errors, (pred - target) * grad_scale), the difference in pred's dtype
    and its squares summed in float64."""
    diff = pred - target
    total = float((diff.astype(np.float64) ** 2).sum()) if diff.size else 0.0
    diff *= diff.dtype.type(grad_scale)
    return total, diff
