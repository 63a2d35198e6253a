"""Losses whose gradient comes out of the same pass as the loss: softmax cross-entropy with integer
labels, and the squared error."""
from __future__ import annotations

import numpy as np

from . import _check as C
from . import numpy_ref as ref
from ._dispatch import kernel, output, use_numpy

REDUCTIONS = ("mean", "sum")


def softmax_cross_entropy(logits, labels, *, reduction="mean", compute_grad=True, grad_input=None):
    """Returns (loss, dlogits): loss as a Python float, dlogits (N, K) or None.

    logits: (N, K) float32; labels: (N,) integers in [0, K). Same definition as
    torch.nn.functional.cross_entropy(logits, labels, reduction=reduction).
    """
    logits = C.array(logits, "logits", ndim=2)
    N, K = logits.shape
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not hasattr(labels, "dtype") or labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be an integer array, got {getattr(labels, 'dtype', type(labels).__name__)}")
    if labels.shape != (N,):
        raise ValueError(f"labels must have shape ({N},) to match logits {tuple(logits.shape)}, got {tuple(labels.shape)}")
    if K == 0:
        raise ValueError("logits must have at least one class (K >= 1)")
    labels = labels.astype(np.int64, copy=False) if labels.dtype != np.int64 else labels
    labels = C.array(labels, "labels", dtype=np.int64)
    if N:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= K:
            raise ValueError(f"labels must be in [0, {K}), got values in [{lo}, {hi}]")
    if compute_grad:
        grad_input = output(grad_input, "grad_input", logits.shape, logits)
    else:
        grad_input = None
    C.same_device(logits=logits, labels=labels, grad_input=grad_input)
    if N == 0:
        return (float("nan") if reduction == "mean" else 0.0), grad_input
    scale = 1.0 / N if reduction == "mean" else 1.0
    if use_numpy():
        total, g = ref.softmax_cross_entropy(logits, labels, reduction="sum")
        if grad_input is not None:
            grad_input[...] = g * logits.dtype.type(scale)
    else:
        total = kernel("softmax_cross_entropy", logits)(logits, labels, grad_input, N, K, scale)
    return float(total) * scale, grad_input


def mse_loss(pred, target, *, reduction="mean", compute_grad=True, grad_input=None):
    """Returns (loss, dpred): loss as a Python float, dpred (pred's shape) or None.

    pred and target: floating-point arrays of one shape and dtype. Same definition as
    torch.nn.functional.mse_loss(pred, target, reduction=reduction). float32 arrays run the fused
    kernel; other floating dtypes (float64 for gradient checks) the NumPy twin.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not hasattr(pred, "dtype") or pred.dtype.kind != "f":
        raise TypeError(f"pred must be a floating-point array, got {C._describe(pred)}")
    pred = C.array(pred, "pred", dtype=pred.dtype)
    target = C.array(target, "target", dtype=pred.dtype, shape=pred.shape)
    if compute_grad:
        grad_input = output(grad_input, "grad_input", pred.shape, pred, pred.dtype)
    else:
        grad_input = None
    C.same_device(pred=pred, target=target, grad_input=grad_input)
    n = pred.size
    if n == 0:
        return (float("nan") if reduction == "mean" else 0.0), grad_input
    scale = 2.0 / n if reduction == "mean" else 2.0
    if use_numpy() or pred.dtype != np.float32:
        total, g = ref.mse_loss(pred, target, scale)
        if grad_input is not None:
            grad_input[...] = g
    else:
        total = kernel("mse_loss", pred)(pred, target, grad_input, scale)
    return (total / n if reduction == "mean" else float(total)), grad_input
