"""fusetrain.optim: PyTorch's optimizers (same names, defaults and update rules) running one fused
kernel per parameter group over a flat arena, with clip-by-global-norm folded into the update."""
from __future__ import annotations

from . import lr_scheduler
from .adaptive import Adagrad, Adam, AdamW, RMSprop
from .optimizer import Optimizer
from .sgd import SGD, NormalizedSGD

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "NormalizedSGD", "Optimizer", "RMSprop", "lr_scheduler"]
