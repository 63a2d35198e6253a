"""Model averaging: an ensemble of trained classifiers whose prediction is the mean of their
softmax probabilities."""
from __future__ import annotations

import numpy as np

from .. import backend, nn


def softmax(logits, axis=-1):
    """Numerically stable softmax in float64 (a NumPy array)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=axis, keepdims=True)
    return z


class Ensemble:
    """Average several trained models (``nn.Module``s or ``Trainer``s with the same output
    classes). ``weights`` (optional, non-negative) weight each member's probabilities."""

    def __init__(self, models, weights=None):
        members = []
        for i, m in enumerate(models):
            model = getattr(m, "model", m)
            if not isinstance(model, nn.Module):
                raise TypeError(f"Ensemble members must be fusetrain Modules or Trainers, got {type(m).__name__} "
                                f"at index {i}")
            members.append(model)
        if not members:
            raise ValueError("an Ensemble needs at least one model")
        if weights is None:
            w = np.full(len(members), 1.0 / len(members))
        else:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (len(members),) or np.any(w < 0) or not w.sum() > 0:
                raise ValueError(f"Ensemble weights must be {len(members)} non-negative numbers with a positive sum, "
                                 f"got {weights!r}")
            w = w / w.sum()
        self.models, self.weights = members, w

    def _outputs(self, model, x, batch_size):
        was = model.training
        model.eval()
        try:
            parts = []
            for lo in range(0, len(x), batch_size):
                o = model(x[lo:lo + batch_size])
                parts.append(o.get() if backend.is_cuda_array(o) else np.array(o, copy=True))
        finally:
            model.train(was)
        return np.concatenate(parts)

    def predict(self, x, batch_size=256):
        """(N, classes) float64 averaged probabilities: sum_i w_i * softmax(model_i(x))."""
        x = np.asarray(x)
        if x.dtype.kind != "f":
            raise TypeError(f"x must be a floating-point array, got dtype {x.dtype}")
        if len(x) == 0:
            raise ValueError("x must hold at least one sample")
        probs = None
        for w, m in zip(self.weights, self.models):
            dtype = next(m.parameters()).dtype
            p = softmax(self._outputs(m, np.ascontiguousarray(x, dtype=dtype), batch_size)) * w
            probs = p if probs is None else probs + p
        return probs

    def evaluate(self, x, y, batch_size=256) -> dict:
        """``{"loss": mean negative log of the averaged probability of the true class,
        "accuracy": ...}``."""
        y = np.asarray(y)
        probs = self.predict(x, batch_size)
        if len(y) != len(probs):
            raise ValueError(f"y must have one label per sample ({len(probs)}), got {len(y)}")
        p_true = probs[np.arange(len(y)), y]
        return {"loss": float(-np.mean(np.log(np.maximum(p_true, np.finfo(np.float64).tiny)))),
                "accuracy": float(np.mean(probs.argmax(axis=1) == y))}
