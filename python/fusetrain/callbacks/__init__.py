"""Callbacks for ``Trainer.fit`` with Keras's hook names: early stopping, checkpoints, CSV logs,
learning-rate schedules and weight averaging (EMA, SWA) with batchnorm recalibration."""
from __future__ import annotations

from ..nn.utils import recompute_batchnorm
from .averaging import EMA, SWA
from .base import Callback, Monitor
from .early_stopping import EarlyStopping
from .files import CSVLogger, ModelCheckpoint
from .schedule import LearningRateScheduler

__all__ = ["CSVLogger", "Callback", "EMA", "EarlyStopping", "LearningRateScheduler", "ModelCheckpoint", "Monitor",
           "SWA", "recompute_batchnorm"]
