"""Weight averaging callbacks: EMA (exponential moving average with a warm-up of the decay) and SWA
(equal-weight average of epochs), each swapped in at the end with batchnorm recalibration."""
from __future__ import annotations

import warnings

import numpy as np

from .. import ops
from ..ops import _check
from ..nn import inference
from ..nn.arena import segment
from ..nn.utils import recompute_batchnorm
from .base import Callback


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
        view = self.__dict__.get("_view")  # (model, structure version, the arena view)
        if view is None or view[0] is not self.model or view[1] != inference.version():  # a re-packing bumps it
            data = _param_arena(self.model)
            self._view = view = (self.model, inference.version(), data)
        data = view[2]
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
    ``avg = d * avg + (1 - d) * w`` (the first step copies w), one fused pass over the flat
    parameter arena (torch.optim.swa_utils.AveragedModel with get_ema_multi_avg_fn).

    ``warmup`` (default on): the decay of the t-th update is ``min(decay, (1 + t) / (10 + t))``,
    the schedule of TensorFlow's ExponentialMovingAverage with ``num_updates`` (timm's ModelEma
    warms up the same way). Without it, a decay of 0.999 over a few hundred steps leaves the
    average mostly made of the first weights; with it the average starts short and lengthens
    as training goes. ``decay_at(t)`` gives the schedule.

    At the end of training the averaged weights replace the model's (the raw ones are kept in
    ``raw_state``) and batchnorm statistics are recomputed for them with one pass over the
    training inputs (``recompute_bn``). Steps skipped for non-finite values are not averaged.
    """

    def __init__(self, decay=0.999, recompute_bn=True, swap_on_end=True, warmup=True):
        super().__init__(recompute_bn, swap_on_end)
        self.decay = _check.number(decay, "EMA decay", lo=0.0, hi=1.0)
        self.warmup = bool(warmup)

    def decay_at(self, t: int) -> float:
        """The decay applied by update number ``t`` (0: the first, which copies the weights)."""
        if t == 0:
            return 0.0
        return min(self.decay, (1.0 + t) / (10.0 + t)) if self.warmup else self.decay

    def on_train_batch_end(self, batch, logs=None):
        if logs is not None and logs.get("skipped"):
            return
        self._update(self.decay_at(self.n_averaged))


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
        self.start_epoch = _check.integer(start_epoch, "SWA start_epoch", lo=0)
        self.swa_lr = None if swa_lr is None else _check.number(swa_lr, "SWA swa_lr", lo=0.0)

    def on_epoch_begin(self, epoch, logs=None):
        if self.swa_lr is not None and epoch >= self.start_epoch:
            for g in self.trainer.optimizer.param_groups:
                g["lr"] = self.swa_lr

    def on_epoch_end(self, epoch, logs=None):
        if epoch >= self.start_epoch:
            self._update(self.n_averaged / (self.n_averaged + 1.0))

    def on_train_end(self, logs=None):
        if self.average is None:
            warnings.warn(f"SWA: training ended before start_epoch={self.start_epoch} (0-based); no weights were "
                          "averaged", RuntimeWarning, stacklevel=2)
            return
        super().on_train_end(logs)
