"""LearningRateScheduler: Keras's per-epoch ``schedule(epoch, lr)`` callback."""
from __future__ import annotations

import math

from ..distributed.world import is_main_process
from ..ops import _check
from .base import Callback


class LearningRateScheduler(Callback):
    """At the start of each epoch set every param group's lr to ``schedule(epoch, lr)`` (epoch
    0-based, lr the current lr of the first group), as Keras's callback does."""

    def __init__(self, schedule, verbose=0):
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler expects a callable schedule(epoch, lr), got {type(schedule).__name__}")
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        groups = self.trainer.optimizer.param_groups
        lr = self.schedule(epoch, float(groups[0]["lr"]))
        if not _check.is_real(lr) or not math.isfinite(lr) or lr < 0:
            raise ValueError(f"LearningRateScheduler: schedule({epoch}, ...) must return a finite lr >= 0, got {lr!r}")
        for g in groups:
            g["lr"] = float(lr)
        if self.verbose and is_main_process():
            print(f"LearningRateScheduler: epoch {epoch + 1}, lr = {lr:.6g}")
