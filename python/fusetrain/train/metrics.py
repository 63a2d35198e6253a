"""The Trainer's losses and metrics by name (Keras's names too), and the checks of those given as objects."""
from __future__ import annotations

from .. import nn

LOSSES = {"cross_entropy": nn.CrossEntropyLoss, "categorical_crossentropy": nn.CrossEntropyLoss,
          "sparse_categorical_crossentropy": nn.CrossEntropyLoss, "mse": nn.MSELoss,
          "mean_squared_error": nn.MSELoss}


def accuracy(y_true, y_pred):
    """Number of samples whose arg-max output equals the integer label (summed, not averaged)."""
    return float((y_pred.argmax(axis=-1) == y_true).sum())


METRICS = {"accuracy": accuracy, "acc": accuracy}


def resolve_loss(loss):
    """(name, loss module) for a loss name or a loss module with backward()."""
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(LOSSES)} or a loss module")
        return loss, LOSSES[loss]()
    if callable(getattr(loss, "backward", None)) and callable(loss):
        return type(loss).__name__, loss
    raise TypeError(f"loss must be a name or a loss module with backward(), got {type(loss).__name__}")


def resolve_metrics(metrics):
    """[(name, fn, summed)]: ``summed`` fns return a batch's sum, the others its mean."""
    if isinstance(metrics, str) or callable(metrics):
        metrics = (metrics,)
    out = []
    for m in metrics or ():
        if isinstance(m, str):
            if m not in METRICS:
                raise ValueError(f"unknown metric {m!r}; expected one of {sorted(METRICS)} or a callable")
            out.append(("accuracy" if m == "acc" else m, METRICS[m], True))
        elif callable(m):
            out.append((getattr(m, "__name__", type(m).__name__), m, False))
        else:
            raise TypeError(f"metrics must be names or callables, got {type(m).__name__}")
    return out
