"""Losses: ``loss = fn(pred, target)`` returns a Python float; ``fn.backward()`` returns d(pred)."""
from __future__ import annotations

import numpy as np

from .. import backend, ops
from .module import Module

_REDUCTIONS = ("mean", "sum")


def _reduction(r):
    if r not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {r!r}")
    return r


class _Loss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = _reduction(reduction)

    def backward(self, grad_output=1.0):
        """d(loss)/d(pred), times ``grad_output`` (the upstream scalar gradient)."""
        grad = self.__dict__.get("_cache")
        if grad is None:
            raise RuntimeError(f"{type(self).__name__}: backward() called before computing a loss")
        return grad if grad_output == 1.0 else grad * grad.dtype.type(grad_output)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits (N, K) against integer class labels (N,), in one fused
    pass that also produces the gradient. Same definition as torch.nn.CrossEntropyLoss."""

    def forward(self, logits, target):
        if not hasattr(logits, "ndim") or logits.ndim != 2:
            raise ValueError(f"CrossEntropyLoss: expected logits of shape (N, classes), got "
                             f"{tuple(getattr(logits, 'shape', ())) or type(logits).__name__}")
        if not hasattr(target, "dtype"):
            target = np.asarray(target)
        grad = self._buffer("grad", logits.shape, logits)
        loss, grad = ops.softmax_cross_entropy(logits, target, reduction=self.reduction, grad_input=grad)
        self._cache = grad
        return loss


class MSELoss(_Loss):
    """Mean (or summed) squared error between pred and a target of the same shape."""

    def forward(self, pred, target):
        if not hasattr(pred, "shape") or not hasattr(pred, "dtype") or pred.dtype.kind != "f":
            raise TypeError(f"MSELoss: pred must be a floating-point array, got {getattr(pred, 'dtype', type(pred).__name__)}")
        target = backend.array_module(pred).asarray(target)
        if tuple(target.shape) != tuple(pred.shape):
            raise ValueError(f"MSELoss: target shape {tuple(target.shape)} must equal pred shape {tuple(pred.shape)}")
        grad = self._buffer("grad", pred.shape, pred)
        loss, grad = ops.mse_loss(pred, target.astype(pred.dtype, copy=False), reduction=self.reduction,
                                  grad_input=grad)
        self._cache = grad
        return loss
