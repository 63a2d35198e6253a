"""The Callback base class (Keras's hook names) and Monitor, the one statement of "a monitored
metric improved" that EarlyStopping and ModelCheckpoint share."""
from __future__ import annotations

import math
import warnings


class Callback:
    """Base class. ``self.trainer`` and ``self.model`` are set by the Trainer before training;
    set ``self.trainer.stop_training = True`` (or ``self.model.stop_training = True``, as in
    Keras) to stop after the current batch.

    Epoch logs hold the epoch's metrics (``"loss"``, ``"accuracy"``, ``"val_loss"``, ...,
    ``"lr"``); batch logs hold ``"batch"``, ``"size"``, ``"loss"`` and ``"skipped"`` (True when
    the step was not applied because of a non-finite loss or gradient under ``nonfinite="skip"``).
    Callbacks that must survive a resume implement ``state_dict()``/``load_state_dict()``
    (arrays, numbers, strings, lists and dicts only); checkpoints store them.
    """

    trainer = None
    model = None

    def set_trainer(self, trainer) -> None:
        self.trainer = trainer
        self.model = trainer.model

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        pass

    def on_train_batch_end(self, batch, logs=None):
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Monitor:
    """A metric of the epoch logs and the direction it improves in: lower for losses, higher for
    accuracies (``mode="auto"`` picks from the name, as Keras does). A value improves on a
    reference when it beats it by more than ``min_delta``."""

    def __init__(self, name, mode="auto", min_delta=0.0, who="Monitor"):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{who} mode must be 'auto', 'min' or 'max', got {mode!r}")
        if mode == "auto":
            lowered = name.lower()
            mode = "max" if any(s in lowered for s in ("acc", "auc", "precision", "recall", "f1")) else "min"
        self.name, self.mode, self.min_delta, self.who = name, mode, abs(float(min_delta)), who

    @property
    def worst(self) -> float:
        """The value every real one improves on."""
        return math.inf if self.mode == "min" else -math.inf

    def improved(self, value, reference) -> bool:
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def value(self, logs):
        """The metric's value in ``logs``, or None with a warning listing the metrics there are."""
        value = (logs or {}).get(self.name)
        if value is None:
            # stacklevel 3: the warning points at the Trainer's hook call, not at this helper
            warnings.warn(f"{self.who} is conditioned on metric {self.name!r}, which is not available; available "
                          f"metrics: {', '.join(sorted(logs or {})) or 'none'}", RuntimeWarning, stacklevel=3)
            return None
        return float(value)
