"""Callbacks that write files during training: ModelCheckpoint (full checkpoints or weights, every
epoch or on improvement) and CSVLogger (one row per epoch)."""
from __future__ import annotations

import csv
import os

from ..distributed.world import is_main_process
from .base import Callback, Monitor


class ModelCheckpoint(Callback):
    """Save a full checkpoint (``Trainer.save_checkpoint``) at the end of each epoch, or only when
    ``monitor`` improved (``save_best_only``). ``path`` may use ``{epoch}`` (1-based) and any
    log key, e.g. ``"ckpt-{epoch:03d}-{val_loss:.4f}.npz"``. ``save_weights_only`` writes just the
    model's parameters and buffers (``Trainer.save_weights``: still a checkpoint file, loadable
    with ``load_weights``). Data parallel, rank 0 writes (the Trainer's saves do nothing on the
    other ranks)."""

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto", save_weights_only=False,
                 verbose=0):
        self.path = os.fspath(path)
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self._monitor = Monitor(monitor, mode, 0.0, "ModelCheckpoint")
        self.mode = self._monitor.mode
        self.save_weights_only = bool(save_weights_only)
        self.verbose = verbose
        self.best = self._monitor.worst

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self.save_best_only:
            current = self._monitor.value(logs)
            if current is None or not self._monitor.improved(current, self.best):
                return
            self.best = current
        try:
            path = self.path.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"ModelCheckpoint path {self.path!r} cannot be formatted with epoch and the logs "
                             f"{sorted(logs)}: {exc}") from exc
        if self.save_weights_only:
            self.trainer.save_weights(path)
        else:
            self.trainer.save_checkpoint(path)
        if self.verbose and is_main_process():
            print(f"ModelCheckpoint: saved {path}")

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"])


class CSVLogger(Callback):
    """Write one CSV row per epoch (``epoch`` then the logs' keys, in sorted order) to ``path``,
    flushing after each row. The epoch column counts from 0, as Keras's CSVLogger does. With
    ``append`` an existing file is continued (e.g. on resume). Data parallel, rank 0 writes it."""

    def __init__(self, path, separator=",", append=False):
        self.path = os.fspath(path)
        self.separator = separator
        self.append = bool(append)
        self._file = None
        self._writer = None
        self._keys = None

    def on_train_begin(self, logs=None):
        if not is_main_process():
            return
        exists = self.append and os.path.exists(self.path) and os.path.getsize(self.path) > 0
        self._keys = None
        if exists:
            with open(self.path, newline="") as f:
                header = next(csv.reader(f, delimiter=self.separator), None)
            self._keys = header[1:] if header else None
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._file = open(self.path, "a" if self.append else "w", newline="")
        self._writer = csv.writer(self._file, delimiter=self.separator)

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is None:  # not rank 0
            return
        logs = logs or {}
        if self._keys is None:
            self._keys = sorted(logs)
            self._writer.writerow(["epoch"] + self._keys)
        self._writer.writerow([epoch] + [repr(float(logs[k])) if k in logs else "" for k in self._keys])
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = self._writer = None
