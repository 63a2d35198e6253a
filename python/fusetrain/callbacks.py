"""Callbacks for ``Trainer.fit`` with Keras's hook names: early stopping, checkpoints, CSV logs,
learning-rate schedules and weight averaging (EMA, SWA) with batchnorm recalibration."""
from __future__ import annotations

import csv
import math
import os
import warnings

import numpy as np

from . import ops
from .nn.arena import segment
from .nn.normalization import _BatchNorm, batchnorm_usable


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

    def set_model(self, model) -> None:
        self.model = model

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


def _mode_op(monitor, mode, who):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{who} mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        name = monitor.lower()
        mode = "max" if any(s in name for s in ("acc", "auc", "precision", "recall", "f1")) else "min"
    return mode


def _monitor_value(logs, monitor, who):
    value = (logs or {}).get(monitor)
    if value is None:
        warnings.warn(f"{who} is conditioned on metric {monitor!r}, which is not available; available metrics: "
                      f"{', '.join(sorted(logs or {})) or 'none'}", RuntimeWarning, stacklevel=3)
    return value


class EarlyStopping(Callback):
    """Stop training when ``monitor`` has stopped improving (Keras's rule).

    An epoch improves when its value beats the best by more than ``min_delta`` (lower for
    losses, higher for accuracies; ``mode="auto"`` picks from the name). Training stops once
    ``patience`` epochs in a row have not improved (and, with ``baseline``, while the best has
    not beaten the baseline). Epochs before ``start_from_epoch`` are ignored. With
    ``restore_best_weights`` the parameters and buffers of the best epoch are put back when
    training ends, whether it stopped early or ran out of epochs. State resets at the start of
    every fit (unless it was just restored from a checkpoint).
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto", restore_best_weights=False,
                 baseline=None, start_from_epoch=0, verbose=0):
        if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 0:
            raise ValueError(f"EarlyStopping patience must be a non-negative int, got {patience!r}")
        if not isinstance(min_delta, (int, float)) or isinstance(min_delta, bool) or not math.isfinite(min_delta):
            raise ValueError(f"EarlyStopping min_delta must be a finite number, got {min_delta!r}")
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = int(patience)
        self.mode = _mode_op(monitor, mode, "EarlyStopping")
        self.restore_best_weights = bool(restore_best_weights)
        self.baseline = None if baseline is None else float(baseline)
        self.start_from_epoch = int(start_from_epoch)
        self.verbose = verbose
        self._restored = False
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = -1
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = -1
        self.best_weights = None

    def _improved(self, value, reference) -> bool:
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_train_begin(self, logs=None):
        if self._restored:
            self._restored = False
            return
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        current = _monitor_value(logs, self.monitor, "EarlyStopping")
        if current is None or epoch < self.start_from_epoch:
            return
        current = float(current)
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.state_dict(), epoch
        self.wait += 1
        if self._improved(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.state_dict()
            if self.baseline is None or self._improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True

    def on_train_end(self, logs=None):
        if self.verbose and self.stopped_epoch >= 0:
            print(f"EarlyStopping: stopped after epoch {self.stopped_epoch + 1}; best {self.monitor} "
                  f"{self.best:.6g} at epoch {self.best_epoch + 1}")
        if self.restore_best_weights and self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict:
        return {"wait": self.wait, "stopped_epoch": self.stopped_epoch, "best": self.best,
                "best_epoch": self.best_epoch, "best_weights": self.best_weights}

    def load_state_dict(self, state: dict) -> None:
        self.wait, self.stopped_epoch = int(state["wait"]), int(state["stopped_epoch"])
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        bw = state.get("best_weights")
        self.best_weights = None if bw is None else {k: np.array(v, copy=True) for k, v in bw.items()}
        self._restored = True


class ModelCheckpoint(Callback):
    """Save a full checkpoint (``Trainer.save_checkpoint``) at the end of each epoch, or only when
    ``monitor`` improved (``save_best_only``). ``path`` may use ``{epoch}`` (1-based) and any
    log key, e.g. ``"ckpt-{epoch:03d}-{val_loss:.4f}.npz"``. ``save_weights_only`` writes just the
    model's parameters and buffers (still a checkpoint file, loadable with ``load_weights``)."""

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto", save_weights_only=False,
                 verbose=0):
        self.path = os.fspath(path)
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self.mode = _mode_op(monitor, mode, "ModelCheckpoint")
        self.save_weights_only = bool(save_weights_only)
        self.verbose = verbose
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self.save_best_only:
            current = _monitor_value(logs, self.monitor, "ModelCheckpoint")
            if current is None:
                return
            better = current < self.best if self.mode == "min" else current > self.best
            if not better:
                return
            self.best = float(current)
        try:
            path = self.path.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"ModelCheckpoint path {self.path!r} cannot be formatted with epoch and the logs "
                             f"{sorted(logs)}: {exc}") from exc
        if self.save_weights_only:
            from .train.checkpoint import save_checkpoint
            save_checkpoint(path, self.model, epoch=epoch + 1)
        else:
            self.trainer.save_checkpoint(path)
        if self.verbose:
            print(f"ModelCheckpoint: saved {path}")

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"])


class CSVLogger(Callback):
    """Write one CSV row per epoch (``epoch`` then the logs' keys, in sorted order) to ``path``,
    flushing after each row. With ``append`` an existing file is continued (e.g. on resume)."""

    def __init__(self, path, separator=",", append=False):
        self.path = os.fspath(path)
        self.separator = separator
        self.append = bool(append)
        self._file = None
        self._writer = None
        self._keys = None

    def on_train_begin(self, logs=None):
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
        if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating)) or not math.isfinite(lr) or lr < 0:
            raise ValueError(f"LearningRateScheduler: schedule({epoch}, ...) must return a finite lr >= 0, got {lr!r}")
        for g in groups:
            g["lr"] = float(lr)
        if self.verbose:
            print(f"LearningRateScheduler: epoch {epoch + 1}, lr = {lr:.6g}")


def _param_arena(model):
    """The model's parameters as one contiguous 1-D view (packing them into an arena if needed)."""
    params = list(model.parameters())
    if not params:
        raise ValueError(f"{type(model).__name__} has no parameters to average")
    seg = segment(params)
    if seg is None:
        model.flatten_parameters()
        seg = segment(params)
    arena, start, stop = seg
    return arena.data[start:stop]


def recompute_batchnorm(model, x, batch_size=256):
    """Re-estimate every BatchNorm's running statistics for the model's current weights: reset
    them, then one pass over ``x`` in training mode with a cumulative average (momentum=None),
    as ``torch.optim.swa_utils.update_bn`` does. The model's mode and momenta are restored.
    No parameter changes. A last batch of one sample is left out, as in ``Trainer.fit``.
    Returns the number of BatchNorm layers updated."""
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    n = len(x)
    if not bns or n == 0:
        return 0
    if n == 1:
        raise ValueError("recompute_batchnorm needs at least 2 samples (one sample has no batch variance)")
    n = batchnorm_usable(n, batch_size)  # as Trainer.fit: no one-sample last batch
    was_training = model.training
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        for i in range(0, n, batch_size):
            model(x[i:min(n, i + batch_size)])
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.train(was_training)
    return len(bns)


class _WeightAverage(Callback):
    """Shared machinery: an average of the flat parameter arena, swapped in at the end of
    training, followed by batchnorm recalibration on the training inputs."""

    def __init__(self, recompute_bn=True, swap_on_end=True):
        self.recompute_bn = bool(recompute_bn)
        self.swap_on_end = bool(swap_on_end)
        self.average = None
        self.n_averaged = 0
        self.raw_state = None
        self._restored = False

    def on_train_begin(self, logs=None):
        if self._restored:
            self._restored = False
            return
        self.average = None
        self.n_averaged = 0
        self.raw_state = None

    def _update(self, decay):
        data = _param_arena(self.model)
        if self.average is None or self.n_averaged == 0:
            self.average = np.array(data, copy=True) if not hasattr(data, "get") else data.copy()
        else:
            ops.ema_update(self.average, data, decay)
        self.n_averaged += 1

    def swap_in(self) -> None:
        """Copy the averaged weights into the model (keeping the raw state in ``raw_state``) and
        recompute batchnorm statistics on the training inputs."""
        if self.average is None:
            return
        self.raw_state = self.model.state_dict()
        data = _param_arena(self.model)
        data[...] = self.average
        if self.recompute_bn:
            x = self.trainer.train_inputs if self.trainer is not None else None
            if x is not None:
                recompute_batchnorm(self.model, x, self.trainer.batch_size or 256)

    def on_train_end(self, logs=None):
        if self.swap_on_end:
            self.swap_in()

    def state_dict(self) -> dict:
        return {"average": self.average, "n_averaged": self.n_averaged}

    def load_state_dict(self, state: dict) -> None:
        avg = state.get("average")
        self.average = None if avg is None else np.array(avg, dtype=np.float32, copy=True)
        self.n_averaged = int(state["n_averaged"])
        self._restored = True


class EMA(_WeightAverage):
    """Exponential moving average of the weights, updated after every optimizer step:
    ``avg = decay * avg + (1 - decay) * w`` (the first step copies w), one fused pass over the
    flat parameter arena (torch.optim.swa_utils.AveragedModel with get_ema_multi_avg_fn).

    At the end of training the averaged weights replace the model's (the raw ones are kept in
    ``raw_state``) and batchnorm statistics are recomputed for them with one pass over the
    training inputs (``recompute_bn``). Steps skipped for non-finite values are not averaged.
    """

    def __init__(self, decay=0.999, recompute_bn=True, swap_on_end=True):
        super().__init__(recompute_bn, swap_on_end)
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be a number in [0, 1], got {decay!r}")
        self.decay = float(decay)

    def on_train_batch_end(self, batch, logs=None):
        if logs is not None and logs.get("skipped"):
            return
        self._update(self.decay)


class SWA(_WeightAverage):
    """Stochastic weight averaging (Izmailov et al. 2018): from epoch ``start_epoch`` (0-based)
    on, the weights at the end of each epoch enter an equal-weight running average
    (``avg += (w - avg) / (n + 1)``, as torch.optim.swa_utils.AveragedModel's default).
    With ``swa_lr`` every param group's lr is held at that value from ``start_epoch`` on.

    At the end of training the average replaces the model's weights (raw ones kept in
    ``raw_state``) and batchnorm statistics are recomputed with one pass over the training
    inputs. If training ended before ``start_epoch`` nothing is swapped and a warning says so.
    """

    def __init__(self, start_epoch=0, swa_lr=None, recompute_bn=True, swap_on_end=True):
        super().__init__(recompute_bn, swap_on_end)
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, (int, np.integer)) or start_epoch < 0:
            raise ValueError(f"SWA start_epoch must be a non-negative int, got {start_epoch!r}")
        if swa_lr is not None and (not isinstance(swa_lr, (int, float)) or isinstance(swa_lr, bool) or swa_lr < 0):
            raise ValueError(f"SWA swa_lr must be a number >= 0 or None, got {swa_lr!r}")
        self.start_epoch = int(start_epoch)
        self.swa_lr = None if swa_lr is None else float(swa_lr)

    def on_epoch_begin(self, epoch, logs=None):
        if self.swa_lr is not None and epoch >= self.start_epoch:
            for g in self.trainer.optimizer.param_groups:
                g["lr"] = self.swa_lr

    def on_epoch_end(self, epoch, logs=None):
        if epoch >= self.start_epoch:
            self._update(self.n_averaged / (self.n_averaged + 1.0))

    def on_train_end(self, logs=None):
        if self.average is None:
            warnings.warn(f"SWA: training ended before start_epoch={self.start_epoch}; no weights were averaged",
                          RuntimeWarning, stacklevel=2)
            return
        super().on_train_end(logs)


__all__ = ["CSVLogger", "Callback", "EMA", "EarlyStopping", "LearningRateScheduler", "ModelCheckpoint", "SWA",
           "recompute_batchnorm"]
