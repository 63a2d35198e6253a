"""Trainer: the Keras-style loop (fit / evaluate / predict) over fusetrain modules and optimizers,
with callbacks, a progress bar, a non-finite policy and bit-for-bit resumable checkpoints."""
from __future__ import annotations

import math

import numpy as np

from .. import backend, nn
from .. import random as frandom
from ..callbacks import Callback, ModelCheckpoint
from ..distributed.world import is_main_process
from ..ops import _check
from ..optim import Optimizer
from ..nn.normalization import _BatchNorm, batchnorm_usable
from ..optim.lr_scheduler import ReduceLROnPlateau
from . import checkpoint as _ckpt
from . import inputs as _in
from . import metrics as _metrics
from . import parallel as _par
from .history import History
from .progress import Progress

_NONFINITE = ("raise", "skip")


def _overrides(cb, hook):
    return getattr(type(cb), hook, None) is not getattr(Callback, hook)


class Trainer:
    """Trains ``model`` with ``optimizer`` on NumPy (or, with device="cuda", CuPy) arrays.

    ``loss``: ``"cross_entropy"`` (integer labels), ``"mse"``, or a loss module with
    ``loss = fn(pred, target)`` and ``fn.backward()``. ``metrics``: names (``"accuracy"``) or
    callables ``fn(y_true, y_pred) -> float`` giving the batch MEAN (logged under ``fn.__name__``).
    ``max_grad_norm``: clip by global L2 norm, folded into the optimizer's fused update (it sets
    ``optimizer.max_grad_norm``). ``scheduler``: stepped once per epoch, after validation;
    a ReduceLROnPlateau gets ``logs[scheduler_monitor]`` (default ``"val_loss"``, or
    ``"loss"`` when there is no validation data).

    ``nonfinite``: what to do when a batch's loss, global gradient norm or batchnorm running
    statistics are NaN/inf. ``"raise"`` stops with FloatingPointError naming the epoch and batch;
    ``"skip"`` drops that update (the history's ``"skipped_steps"`` counts them per epoch), and an
    epoch whose every batch is skipped raises (the run has diverged). Either way the check runs
    before the optimizer step: weights, optimizer state and batchnorm statistics are as before.
    ``metadata``: a dict (JSON-like values) stored in every checkpoint; ``load_checkpoint``
    restores it. Inputs: floating arrays in the model's dtype (float64 data is cast once); integer
    inputs are refused (scale them first, e.g. ``fusetrain.data.scale``). Labels for cross-entropy
    are integers in [0, classes), all checked before the first step.

    Data parallel when ``fusetrain.distributed`` is initialized with more than one rank: every
    rank runs the same script on the same data, ``batch_size`` is per rank, replicas start from
    rank 0's weights and stay identical (gradients averaged before clipping and the step); loss,
    metrics and decisions are reduced over the ranks; ``evaluate`` splits the samples; rank 0
    alone shows progress and writes checkpoints; an exception on one rank during ``fit`` ends
    the job (see ``fusetrain.train.parallel``).
    """

    def __init__(self, model, optimizer, loss="cross_entropy", metrics=("accuracy",), max_grad_norm=None,
                 scheduler=None, callbacks=(), device="cpu", nonfinite="raise", scheduler_monitor=None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"Trainer model must be a fusetrain.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"Trainer optimizer must be a fusetrain.optim optimizer, got {type(optimizer).__name__}")
        optimizer.check_model(model)  # an optimizer of another model's parameters would train nothing here
        self.model, self.optimizer = model, optimizer
        self.loss_name, self.loss_fn = _metrics.resolve_loss(loss)
        self.metrics = _metrics.resolve_metrics(metrics)
        if max_grad_norm is not None:
            optimizer.max_grad_norm = _check.number(max_grad_norm, "max_grad_norm", lo=0.0, lo_open=True)
        self.max_grad_norm = optimizer.max_grad_norm
        if scheduler is not None and getattr(scheduler, "optimizer", None) is not optimizer:
            raise ValueError("the scheduler must be built on the Trainer's optimizer")
        self.scheduler = scheduler
        self.scheduler_monitor = scheduler_monitor
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be fusetrain.callbacks.Callback instances, got {type(cb).__name__}")
        if nonfinite not in _NONFINITE:
            raise ValueError(f"nonfinite must be one of {_NONFINITE}, got {nonfinite!r}")
        self.nonfinite = nonfinite
        device = str(device)
        if device.startswith("cuda"):
            device = "cuda"
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if device == "cuda":
            model.to("cuda")
        self.device = device
        self.history = History()
        self.metadata = {}
        self.epoch = 0
        self.stop_training = False
        self.train_inputs = None
        self.batch_size = None
        self._resume_epoch = None
        self._gather = _in.Gather()
        # The trainer's own random streams (shuffling, dropout), derived from the global state
        # (fusetrain.manual_seed) now, so fits in other threads never draw from them.
        self._stream = frandom.Stream(int(frandom.default_generator().integers(1 << 63)))

    @property
    def rng(self):
        """The trainer's random streams (fusetrain.random.Stream): fits draw from them, checkpoints store them."""
        return self._stream

    # ------------------------------------------------------------------ data handling
    def _dtype(self):
        p = next(self.model.parameters(), None)
        return np.dtype(p.dtype) if p is not None else np.dtype(np.float32)

    def _inputs(self, x, name="x"):
        return _in.as_inputs(x, self._dtype(), self.device, name)

    def _targets(self, y, n, name="y"):
        return _in.as_targets(y, n, isinstance(self.loss_fn, nn.CrossEntropyLoss), self._dtype(), self.device, name)

    def _classes(self, x):
        """The model's outputs per sample (an eval forward of one sample)."""
        was_training = self.model.training
        self.model.eval()
        try:
            return int(self.model(x[:1]).shape[-1])
        finally:
            self.model.train(was_training)

    # ------------------------------------------------------------------ one step
    def _bn_buffers(self):
        return [b for _, b in self.model.named_buffers() if hasattr(b, "shape")]

    def _train_step(self, xb, yb, bn_bufs, bn_saved, par):
        for src, dst in zip(bn_bufs, bn_saved):
            dst[...] = src
        out = self.model(xb)
        loss = self.loss_fn(out, yb)
        par.begin_backward()
        self.model.backward(self.loss_fn.backward())
        # A finite loss can still leave an overflowed running variance: that counts as non-finite.
        stats_ok = all(bool(backend.array_module(b).isfinite(b).all()) for b in bn_bufs)
        loss, stats_ok = par.end_backward(loss, len(xb), stats_ok)  # on several ranks: averaged gradients
        norm = self.optimizer.grad_norm()
        if not (math.isfinite(loss) and math.isfinite(norm) and stats_ok):
            self.optimizer.zero_grad()
            for src, dst in zip(bn_saved, bn_bufs):
                dst[...] = src
            return out, loss, norm, False
        self.optimizer.step(grad_norm=norm)
        self.optimizer.zero_grad()
        return out, loss, norm, True

    # ------------------------------------------------------------------ fit
    def fit(self, x, y, epochs=1, batch_size=32, validation_data=None, shuffle=True, seed=None, verbose=1,
            initial_epoch=None, callbacks=None) -> History:
        """Train for epochs ``initial_epoch .. epochs-1`` (Keras: ``epochs`` is the index of the
        last epoch + 1). ``initial_epoch`` defaults to 0, or, right after ``load_checkpoint``, to
        the checkpoint's epoch, so ``load_checkpoint(p)`` + ``fit(..., epochs=N)`` finishes the
        run exactly as the uninterrupted one would have (the history continues too).

        ``seed``: when given, the trainer's random streams (shuffling, dropout masks) restart
        from it, so the fit is reproducible (ignored when resuming: the checkpoint's RNG state
        wins). Without it they go on from where the last fit left them; a new Trainer's streams
        are drawn from the global state, so ``fusetrain.manual_seed`` before building the model
        and the Trainer makes the whole run reproducible. A fit in another thread never draws
        from this trainer's streams (fusetrain.random.use_stream).
        ``verbose``: 0 is silent, 1 shows a progress bar per epoch (on a terminal; a widget in
        notebooks; one line per epoch in logs and pipes), 2 one line per epoch (see
        ``fusetrain.train.Progress``). Returns ``self.history``.
        Callbacks run in the order given, except that ModelCheckpoint instances run after all the
        others, so each checkpoint captures the complete end-of-epoch state.
        When the model has batchnorm layers and the last batch would hold a single sample (batch
        statistics of one sample are undefined), that batch is left out of the epoch.
        """
        par = _par.for_trainer(self)
        with par.agree():  # bad input raises on every rank, not on one while the others wait
            x, y, val = self._fit_inputs(x, y, epochs, batch_size, validation_data)
        resuming = self._resume_epoch is not None
        if initial_epoch is None:
            initial_epoch = self._resume_epoch if resuming else 0
        self._resume_epoch = None
        if not resuming:
            self.history = History()
            if seed is not None:
                self._stream = frandom.Stream(seed)
        facts = {"len(x)": len(x), "batch_size": int(batch_size), "epochs": int(epochs), "shuffle": bool(shuffle),
                 "initial_epoch": int(initial_epoch), "len(validation_data)": None if val is None else len(val[0])}
        with frandom.use_stream(self._stream), par.fitting(facts):
            return self._fit(x, y, epochs, batch_size, val, shuffle, verbose, initial_epoch, callbacks, par)

    def _fit_inputs(self, x, y, epochs, batch_size, validation_data):
        x = self._inputs(x)
        y = self._targets(y, len(x))
        _check.integer(epochs, "epochs", lo=0)
        _check.integer(batch_size, "batch_size", lo=1)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (x_val, y_val)")
            xv = _in.check_samples_like(self._inputs(validation_data[0], "validation_data[0]"), x, "validation_data[0]")
            val = (xv, self._targets(validation_data[1], len(xv), "validation_data[1]"))
        if isinstance(self.loss_fn, nn.CrossEntropyLoss):  # every label checked before any step
            classes = self._classes(x)
            _in.check_labels(y, classes, "y")
            if val is not None:
                _in.check_labels(val[1], classes, "validation_data[1]")
        return x, y, val

    def _fit(self, x, y, epochs, batch_size, val, shuffle, verbose, initial_epoch, callbacks, par):
        cbs = self.callbacks if callbacks is None else self.callbacks + list(callbacks)
        # Checkpoints last: a file written at an epoch's end must hold every other callback's
        # update of that epoch (an EMA/SWA average, EarlyStopping's counters), whatever the order given.
        cbs = [cb for cb in cbs if not isinstance(cb, ModelCheckpoint)] + \
              [cb for cb in cbs if isinstance(cb, ModelCheckpoint)]
        batch_begin = [cb for cb in cbs if _overrides(cb, "on_train_batch_begin")]
        batch_end = [cb for cb in cbs if _overrides(cb, "on_train_batch_end")]
        # only a batch callback can stop mid-epoch: without one anywhere, no vote per batch (a collective)
        batch_votes = par.any(bool(batch_begin or batch_end))
        self.train_inputs, self.batch_size = x, int(batch_size)
        self.stop_training = False
        object.__setattr__(self.model, "stop_training", False)
        for cb in cbs:
            cb.set_trainer(self)
        n, m = len(x), par.samples(len(x))  # m: this rank's samples per epoch
        # a one-sample last batch cannot train batchnorm: that sample waits for the next epoch's shuffle
        n_train = batchnorm_usable(m, batch_size) if any(isinstance(b, _BatchNorm) for b in self.model.modules()) else m
        nb = -(-n_train // batch_size)
        bn_bufs = self._bn_buffers()
        bn_saved = [b.copy() for b in bn_bufs]
        self.model.train()
        self.optimizer.zero_grad()
        progress = Progress(epochs, nb, verbose if par.main else 0)
        for cb in cbs:
            cb.on_train_begin({})
        try:
            for epoch in range(int(initial_epoch), int(epochs)):
                for cb in cbs:
                    cb.on_epoch_begin(epoch, {})
                self.model.train()
                order = par.order(frandom.default_generator().permutation(n) if shuffle else None, n)
                progress.start_epoch(epoch)
                sums = {name: 0.0 for name, _, _ in self.metrics}
                loss_sum, seen, skipped = 0.0, 0, 0
                for b in range(nb):
                    lo, hi = b * batch_size, min(m, (b + 1) * batch_size)
                    if order is None:
                        xb, yb = x[lo:hi], y[lo:hi]
                    else:
                        idx = order[lo:hi]
                        xb, yb = self._gather(x, idx, "x"), self._gather(y, idx, "y")
                    for cb in batch_begin:
                        cb.on_train_batch_begin(b, {"batch": b, "size": hi - lo})
                    out, loss, norm, ok = self._train_step(xb, yb, bn_bufs, bn_saved, par)
                    if not ok:
                        what = (f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {norm}"
                                if not math.isfinite(norm) else "batchnorm running statistics")
                        if self.nonfinite == "raise":
                            raise par.agreed(FloatingPointError(
                                f"non-finite {what} at epoch {epoch + 1}, batch {b + 1}/{nb}; the update was not "
                                "applied (weights and optimizer state are as before this batch). Lower the "
                                "learning rate, clip gradients (max_grad_norm), check the inputs for NaN/inf, or "
                                "pass nonfinite='skip' to drop such batches"))
                        skipped += 1
                    else:
                        bs, total = hi - lo, par.total(hi - lo)  # loss: over all ranks' batches
                        loss_sum += loss * total
                        seen += total
                        for name, fn, summed in self.metrics:
                            v = fn(yb, out)
                            sums[name] += float(v) if summed else float(v) * bs
                    progress.step(par.total(hi - lo), loss_sum / seen if seen else None)
                    for cb in batch_end:
                        cb.on_train_batch_end(b, {"batch": b, "size": hi - lo, "loss": loss, "skipped": not ok})
                    if batch_votes and par.any(self.stop_training or getattr(self.model, "stop_training", False)):
                        self.stop_training = True
                        break
                if skipped and not seen:
                    raise par.agreed(FloatingPointError(
                        f"every batch of epoch {epoch + 1} was non-finite and skipped: the model has diverged "
                        "(weights or batchnorm statistics overflowed); lower the learning rate or clip gradients"))
                sums = par.sums(sums)
                logs = {"loss": loss_sum / seen if seen else math.nan}
                for name, _, _ in self.metrics:
                    logs[name] = sums[name] / seen if seen else math.nan
                if val is not None:
                    for k, v in self.evaluate(*val, batch_size=max(batch_size, 256), _checked=True).items():
                        logs["val_" + k] = v
                logs["lr"] = float(self.optimizer.param_groups[0]["lr"])
                if self.nonfinite == "skip":
                    logs["skipped_steps"] = skipped
                progress.end_epoch(logs)
                self._step_scheduler(logs)
                self.history.append(epoch, logs)
                self.epoch = epoch + 1
                for cb in cbs:
                    cb.on_epoch_end(epoch, logs)
                if par.any(self.stop_training or getattr(self.model, "stop_training", False)):
                    self.stop_training = True
                    break
        finally:
            progress.close()
            self.model.train()
        for cb in cbs:
            cb.on_train_end({})
        return self.history

    def _step_scheduler(self, logs):
        s = self.scheduler
        if s is None:
            return
        if isinstance(s, ReduceLROnPlateau):
            key = self.scheduler_monitor or ("val_loss" if "val_loss" in logs else "loss")
            if key not in logs:
                raise KeyError(f"ReduceLROnPlateau monitors {key!r}, which is not in the logs {sorted(logs)}")
            s.step(logs[key])
        else:
            s.step()

    # ------------------------------------------------------------------ inference
    def predict(self, x, batch_size=256):
        """The model's outputs for all of ``x`` (e.g. (N, classes) logits), batch by batch in
        eval mode; returns a NumPy array. The model's train/eval mode is restored afterwards."""
        x, batch_size = self._inputs(x), _check.integer(batch_size, "batch_size", lo=1)
        was_training = self.model.training
        self.model.eval()
        try:
            out = None
            for lo in range(0, len(x), batch_size):
                o = self.model(x[lo:lo + batch_size])
                if out is None:
                    out = np.empty((len(x),) + tuple(o.shape[1:]), dtype=o.dtype)
                out[lo:lo + len(o)] = o.get() if backend.is_cuda_array(o) else o
        finally:
            self.model.train(was_training)
        return out

    def evaluate(self, x, y, batch_size=256, _checked=False) -> dict:
        """``{"loss": mean loss over all samples, metric: mean value, ...}`` in eval mode (on
        several ranks every rank calls it: each evaluates its part, the sums are reduced)."""
        par, batch_size = _par.for_trainer(self), _check.integer(batch_size, "batch_size", lo=1)
        if not _checked:
            with par.agree():
                x = self._inputs(x)
                y = self._targets(y, len(x))
        was_training = self.model.training
        self.model.eval()
        sums = {"loss": 0.0, **{name: 0.0 for name, _, _ in self.metrics}}
        first, last = par.chunk(len(x))
        with par.guard():
            try:
                for lo in range(first, last, batch_size):
                    xb, yb = x[lo:min(last, lo + batch_size)], y[lo:min(last, lo + batch_size)]
                    out = self.model(xb)
                    bs = len(xb)
                    sums["loss"] += self.loss_fn(out, yb) * bs
                    for name, fn, summed in self.metrics:
                        v = fn(yb, out)
                        sums[name] += float(v) if summed else float(v) * bs
            finally:
                self.model.train(was_training)
            sums = par.sums(sums)
        return {name: s / len(x) for name, s in sums.items()}

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path) -> None:
        """Write everything needed to continue this run bit for bit: parameters and buffers,
        optimizer, scheduler and callback state, RNG streams, epoch and history (see
        ``fusetrain.train.checkpoint``). Atomic: a crash leaves the previous file intact.

        Saved after ``fit`` returned with EMA/SWA averaging or EarlyStopping's
        restore_best_weights, the file holds the averaged or best weights the model has then (the
        model to evaluate), and a resumed fit trains on from those. To resume exactly where
        training was, use the checkpoints ModelCheckpoint writes at the end of each epoch."""
        if not is_main_process():
            return
        with frandom.use_stream(self._stream):  # the trainer's RNG streams go into the file
            _ckpt.save_checkpoint(path, self.model, self.optimizer, self.scheduler, callbacks=self.callbacks,
                                  epoch=self.epoch, history=self.history,
                                  extra={"metadata": self.metadata,
                                         "trainer": {"nonfinite": self.nonfinite, "loss": self.loss_name}})

    def save_weights(self, path) -> None:
        """Write only the model's parameters and buffers (a checkpoint ``load_weights`` reads)."""
        if is_main_process():
            _ckpt.save_checkpoint(path, self.model, epoch=self.epoch)

    def load_checkpoint(self, path) -> int:
        """Restore a checkpoint written by ``save_checkpoint`` (validated fully first: a truncated,
        corrupt or mismatched file raises CheckpointError and changes nothing). The next ``fit``
        continues from its epoch. Returns that epoch."""
        with frandom.use_stream(self._stream):  # the file's RNG streams become the trainer's
            info = _ckpt.load_checkpoint(path, self.model, self.optimizer, self.scheduler, callbacks=self.callbacks,
                                         check_extra=lambda extra: dict((extra or {}).get("metadata") or {}))
        self.metadata = dict((info.get("extra") or {}).get("metadata") or {})
        self.epoch = info["epoch"]
        self.history = History(info["history"], info["history_epochs"])
        self._resume_epoch = self.epoch
        return self.epoch

