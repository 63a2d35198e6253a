"""EarlyStopping: Keras's rule for stopping when a monitored metric stops improving, restoring the
best epoch's weights, saying so, and re-arming when a stopped run is resumed with more epochs."""
from __future__ import annotations

import numpy as np

from ..console import echo
from ..distributed.world import is_main_process
from ..ops import _check
from .base import Callback, Monitor


class EarlyStopping(Callback):
    """Stop training when ``monitor`` has stopped improving (Keras's rule).

    An epoch improves when its value beats the best by more than ``min_delta`` (lower for
    losses, higher for accuracies; ``mode="auto"`` picks from the name). Training stops once
    ``patience`` epochs in a row have not improved (and, with ``baseline``, while the best has
    not beaten the baseline). Epochs before ``start_from_epoch`` are ignored. With
    ``restore_best_weights`` the parameters and buffers of the best epoch are put back when
    training ends, whether it stopped early or ran out of epochs.

    What happened is recorded in the Trainer's History (``stopped_epoch``, ``restored_epoch``)
    and, with ``verbose >= 1``, printed as one line when training ends.

    State resets at the start of every fit, unless it was just restored from a checkpoint: then
    the run goes on where it was, and a run that had stopped is re-armed (``patience`` more
    epochs from the resumed one, the best so far kept), so a resumed fit with a larger epoch
    budget trains on instead of stopping after one epoch.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto", restore_best_weights=False,
                 baseline=None, start_from_epoch=0, verbose=0):
        _check.integer(patience, "EarlyStopping patience", lo=0)
        _check.number(min_delta, "EarlyStopping min_delta")
        self._monitor = Monitor(monitor, mode, min_delta, "EarlyStopping")
        self.monitor, self.mode, self.min_delta = monitor, self._monitor.mode, self._monitor.min_delta
        self.patience = int(patience)
        self.restore_best_weights = bool(restore_best_weights)
        self.baseline = None if baseline is None else float(baseline)
        self.start_from_epoch = int(start_from_epoch)
        self.verbose = verbose
        self.rearmed_after = None
        self._restored = False
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = -1
        self.best = self._monitor.worst
        self.best_epoch = -1
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self.rearmed_after = None
        if not self._restored:
            self._reset()
            return
        self._restored = False
        if self.stopped_epoch >= 0:
            self.rearmed_after = self.stopped_epoch
            self.wait, self.stopped_epoch = 0, -1
            if self.verbose and is_main_process():
                echo(f"EarlyStopping: the resumed run had stopped after epoch {self.rearmed_after + 1}; re-armed "
                      f"with patience {self.patience} (best {self.monitor} so far {self.best:.4g}, epoch "
                      f"{self.best_epoch + 1})")

    def on_epoch_end(self, epoch, logs=None):
        current = self._monitor.value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.state_dict(), epoch
        self.wait += 1
        if self._monitor.improved(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.state_dict()
            if self.baseline is None or self._monitor.improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True

    def on_train_end(self, logs=None):
        restored = self.restore_best_weights and self.best_weights is not None
        if restored:
            self.model.load_state_dict(self.best_weights)
        history = getattr(self.trainer, "history", None)
        if history is not None:
            history.stopped_epoch = self.stopped_epoch if self.stopped_epoch >= 0 else None
            history.restored_epoch = self.best_epoch if restored else None
        if self.verbose and is_main_process():
            message = self.describe(restored)
            if message:
                echo(message)

    def describe(self, restored=None) -> str:
        """One line on what happened at the end of the last fit (empty when there is nothing to say)."""
        if restored is None:
            restored = self.restore_best_weights and self.best_weights is not None
        parts = []
        if self.stopped_epoch >= 0:
            parts.append(f"stopped early after epoch {self.stopped_epoch + 1}: {self.monitor} had not improved for "
                         f"{self.wait} epoch{'s' if self.wait != 1 else ''}")
        if restored:
            parts.append(f"restored the weights of epoch {self.best_epoch + 1} (best {self.monitor} "
                         f"{self.best:.4g})")
        return "EarlyStopping: " + "; ".join(parts) if parts else ""

    def state_dict(self) -> dict:
        return {"wait": self.wait, "stopped_epoch": self.stopped_epoch, "best": self.best,
                "best_epoch": self.best_epoch, "best_weights": self.best_weights}

    def load_state_dict(self, state: dict) -> None:
        self.wait, self.stopped_epoch = int(state["wait"]), int(state["stopped_epoch"])
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        bw = state.get("best_weights")
        self.best_weights = None if bw is None else {k: np.array(v, copy=True) for k, v in bw.items()}
        self._restored = True
