"""fusetrain.train: the Trainer (fit / evaluate / predict), History, checkpoints and ensembles."""
from __future__ import annotations

from .checkpoint import CheckpointError, load_checkpoint, load_weights, save_checkpoint
from .ensemble import Ensemble
from .history import History
from .progress import Progress
from .trainer import Trainer

__all__ = ["CheckpointError", "Ensemble", "History", "Progress", "Trainer", "load_checkpoint", "load_weights",
           "save_checkpoint"]
