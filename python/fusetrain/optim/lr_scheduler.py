"""Learning-rate schedulers with PyTorch's definitions: each ``step()`` updates every param
group's ``"lr"`` in the chainable form PyTorch uses, so ``get_last_lr()`` sequences match
``torch.optim.lr_scheduler`` step for step. States are plain dicts of scalars and lists."""
from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter

import numpy as np

from ..ops import _check
from .optimizer import Optimizer

__all__ = ["CosineAnnealingLR", "ExponentialLR", "LRScheduler", "LinearLR", "MultiStepLR", "ReduceLROnPlateau",
           "SequentialLR", "StepLR"]


def _check_optimizer(optimizer):
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"expected a fusetrain.optim optimizer, got {type(optimizer).__name__}")


# State entries that count (epochs, steps, waits) or are learning rates: never negative.
_NON_NEGATIVE = {"_step_count", "patience", "cooldown", "cooldown_counter", "num_bad_epochs", "warmup_epochs",
                 "base_lrs", "_last_lr", "min_lrs", "gamma", "eta_min", "step_size", "T_max", "total_iters"}
_CHOICES = {"mode": ("min", "max"), "threshold_mode": ("rel", "abs")}


def _check_like(saved, current, where):
    """Raises ValueError/TypeError naming the entry unless ``saved`` has the entries of
    ``current`` (a scheduler's own state), each of the same kind: bools, ints, real numbers,
    strings among their choices, lists of the same length, dicts of ints."""
    if not isinstance(saved, dict):
        raise TypeError(f"{where} must be a dict, got {type(saved).__name__}")
    missing, unexpected = sorted(set(current) - set(saved)), sorted(map(str, set(saved) - set(current)))
    if missing or unexpected:
        raise ValueError(f"{where} does not match this scheduler: missing {missing}, unexpected {unexpected}")
    for k, cur in current.items():
        v, name = saved[k], f"{where}[{k!r}]"
        items = list(v) if isinstance(cur, list) and isinstance(v, (list, tuple)) else None
        if isinstance(cur, list) and (items is None or len(items) != len(cur)):
            raise ValueError(f"{name} must be a list of {len(cur)}, got {v!r}")
        for x, c in zip(items if items is not None else [v], cur if items is not None else [cur]):
            if isinstance(c, bool):
                ok = isinstance(x, (bool, np.bool_))
            elif _check.is_int(c):
                ok = _check.is_int(x)
            elif isinstance(c, (float, np.floating)):
                ok = _check.is_real(x)
            elif isinstance(c, str):
                ok = isinstance(x, str) and x in _CHOICES.get(k, (x,))
            elif isinstance(c, dict):
                ok = isinstance(x, dict) and all(_check.is_int(a) and _check.is_int(b) for a, b in x.items())
            else:
                ok = True
            if not ok:
                raise ValueError(f"{name} must be like {c!r} ({type(c).__name__}), got {x!r}")
            if k in _NON_NEGATIVE and not isinstance(c, (str, dict)) and x < 0:
                raise ValueError(f"{name} must be >= 0, got {x!r}")


class LRScheduler:
    """Base class: sets ``initial_lr`` in each group, keeps ``base_lrs`` and ``last_epoch``, and
    takes the initial step (last_epoch 0) at construction, as PyTorch does."""

    def __init__(self, optimizer, last_epoch: int = -1):
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        if last_epoch == -1:
            for g in optimizer.param_groups:
                g.setdefault("initial_lr", g["lr"])
        else:
            for i, g in enumerate(optimizer.param_groups):
                if "initial_lr" not in g:
                    raise KeyError(f"param_groups[{i}] has no 'initial_lr' although last_epoch={last_epoch} "
                                   "(resuming): load the optimizer state first")
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self):
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list:
        raise NotImplementedError

    def _group_lrs(self) -> list:
        return [g["lr"] for g in self.optimizer.param_groups]

    def step(self) -> None:
        """Advance one epoch (or iteration) and set each group's lr."""
        self._step_count += 1
        self._update_lr(None)

    def _update_lr(self, epoch):
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            values = self._closed_form() if hasattr(self, "_closed_form") else self.get_lr()
        for g, lr in zip(self.optimizer.param_groups, values):
            g["lr"] = lr
        self._last_lr = self._group_lrs()

    def get_last_lr(self) -> list:
        """The learning rates set by the latest step, one per param group."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items() if k != "optimizer"}

    def check_state_dict(self, state_dict) -> None:
        """Raises ValueError/TypeError naming the entry unless ``state_dict`` holds this
        scheduler's entries, each of the kind it has now."""
        _check_like(state_dict, self.state_dict(), "scheduler state")

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a state from ``state_dict`` (checked first: on a problem nothing changes)."""
        self.check_state_dict(state_dict)
        self.__dict__.update({k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in state_dict.items()})


class ExponentialLR(LRScheduler):
    """lr *= gamma every step (the lesson's decay: gamma=0.98 per epoch)."""

    def __init__(self, optimizer, gamma: float, last_epoch: int = -1):
        self.gamma = _check.number(gamma, "gamma", lo=0.0, lo_open=True)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self._is_initial or self.last_epoch == 0:
            return self._group_lrs()
        return [lr * self.gamma for lr in self._group_lrs()]

    def _closed_form(self):
        return [b * self.gamma ** self.last_epoch for b in self.base_lrs]


class StepLR(LRScheduler):
    """lr *= gamma every ``step_size`` steps."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        self.step_size = _check.integer(step_size, "step_size", lo=1)
        self.gamma = _check.number(gamma, "gamma", lo=0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._group_lrs()
        return [lr * self.gamma for lr in self._group_lrs()]

    def _closed_form(self):
        return [b * self.gamma ** (self.last_epoch // self.step_size) for b in self.base_lrs]


class MultiStepLR(LRScheduler):
    """lr *= gamma at each milestone (to the power of how often it is listed)."""

    def __init__(self, optimizer, milestones, gamma: float = 0.1, last_epoch: int = -1):
        self.milestones = dict(Counter(int(m) for m in milestones))
        self.gamma = _check.number(gamma, "gamma", lo=0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch not in self.milestones:
            return self._group_lrs()
        return [lr * self.gamma ** self.milestones[self.last_epoch] for lr in self._group_lrs()]

    def _closed_form(self):
        ms = sorted(Counter(self.milestones).elements())
        return [b * self.gamma ** bisect_right(ms, self.last_epoch) for b in self.base_lrs]

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self.milestones = {int(k): int(v) for k, v in dict(self.milestones).items()}


class CosineAnnealingLR(LRScheduler):
    """lr follows eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2 (PyTorch's
    recursive form, which keeps going past T_max as a cosine wave)."""

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        self.T_max = _check.integer(T_max, "T_max", lo=1)
        self.eta_min = _check.number(eta_min, "eta_min", lo=0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        t, T, lo = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._group_lrs()
        if self._step_count == 1 and t > 0:
            return [lo + (b - lo) * (1 + math.cos(t * math.pi / T)) / 2 for b in self.base_lrs]
        if (t - 1 - T) % (2 * T) == 0:
            return [lr + (b - lo) * (1 - math.cos(math.pi / T)) / 2
                    for b, lr in zip(self.base_lrs, self._group_lrs())]
        return [(1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T)) * (lr - lo) + lo
                for lr in self._group_lrs()]

    def _closed_form(self):
        t, T, lo = self.last_epoch, self.T_max, self.eta_min
        return [lo + (b - lo) * (1 + math.cos(math.pi * t / T)) / 2 for b in self.base_lrs]


class LinearLR(LRScheduler):
    """Warm-up: the factor goes linearly from ``start_factor`` to ``end_factor`` over
    ``total_iters`` steps, then stays."""

    def __init__(self, optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5,
                 last_epoch: int = -1):
        self.start_factor = _check.number(start_factor, "start_factor", lo=0.0, lo_open=True, hi=1.0)
        self.end_factor = _check.number(end_factor, "end_factor", lo=0.0, hi=1.0)
        self.total_iters = _check.integer(total_iters, "total_iters", lo=1)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        s, e, T = self.start_factor, self.end_factor, self.total_iters
        if self.last_epoch == 0:
            return [lr * s for lr in self._group_lrs()]
        if self._is_initial or self.last_epoch > T:
            return self._group_lrs()
        f = 1.0 + (e - s) / (T * s + (self.last_epoch - 1) * (e - s))
        return [lr * f for lr in self._group_lrs()]

    def _closed_form(self):
        s, e, T = self.start_factor, self.end_factor, self.total_iters
        return [b * (s + (e - s) * min(T, self.last_epoch) / T) for b in self.base_lrs]


def _undo_initial_step(scheduler):
    """Undo the step a scheduler took when it was built; for a nested SequentialLR, its children's
    (its own count stays, as torch's recursive_undo leaves it: the same lrs as torch)."""
    children = getattr(scheduler, "_schedulers", None)
    if children is None:
        scheduler.last_epoch -= 1
    for child in children or ():
        _undo_initial_step(child)


class SequentialLR(LRScheduler):
    """Runs ``schedulers[i]`` from ``milestones[i-1]`` on (e.g. LinearLR warm-up, then cosine)."""

    def __init__(self, optimizer, schedulers, milestones, last_epoch: int = -1):
        _check_optimizer(optimizer)
        schedulers = list(schedulers)
        if not schedulers:
            raise ValueError("SequentialLR expects at least one scheduler")
        for i, s in enumerate(schedulers):
            if isinstance(s, ReduceLROnPlateau):
                raise ValueError(f"SequentialLR does not support ReduceLROnPlateau (scheduler {i})")
            if getattr(s, "optimizer", None) is not optimizer:
                raise ValueError(f"scheduler {i} ({type(s).__name__}) belongs to another optimizer")
        milestones = [int(m) for m in milestones]
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"SequentialLR expects len(milestones) == len(schedulers) - 1, got "
                             f"{len(milestones)} milestones for {len(schedulers)} schedulers")
        self._schedulers = schedulers
        self._milestones = milestones
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        for g in optimizer.param_groups:
            g["lr"] = g["initial_lr"]
        for s in schedulers:  # undo the initial step each scheduler took when it was built
            _undo_initial_step(s)
        idx = bisect_right(milestones, 0)
        schedulers[idx]._initial_step()
        self._last_lr = schedulers[idx].get_last_lr()
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]

    def step(self) -> None:
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        sched = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            sched._update_lr(0)
        else:
            sched.step()
        self._last_lr = sched.get_last_lr()

    def state_dict(self) -> dict:
        sd = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "_schedulers")}
        sd["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return sd

    def check_state_dict(self, state_dict) -> None:
        current = self.state_dict()
        subs = current.pop("_schedulers")
        if not isinstance(state_dict, dict) or not isinstance(state_dict.get("_schedulers"), (list, tuple)) \
                or len(state_dict["_schedulers"]) != len(subs):
            raise ValueError(f"scheduler state must hold the states of {len(subs)} schedulers")
        _check_like({k: v for k, v in state_dict.items() if k != "_schedulers"}, current, "scheduler state")
        for i, (s, sd) in enumerate(zip(self._schedulers, state_dict["_schedulers"])):
            try:
                s.check_state_dict(sd)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"schedulers[{i}]: {exc}") from None

    def load_state_dict(self, state_dict: dict) -> None:
        self.check_state_dict(state_dict)
        state_dict = dict(state_dict)
        subs = state_dict.pop("_schedulers")
        self.__dict__.update(state_dict)
        for s, sd in zip(self._schedulers, subs):
            s.load_state_dict(sd)


class ReduceLROnPlateau(LRScheduler):
    """Multiply the lr by ``factor`` when ``step(metric)`` has not improved for ``patience``
    epochs (PyTorch's rule, with threshold, cooldown, min_lr and eps).

    Warm-up composes with it: with ``warmup_epochs=k`` the lr starts at
    ``base_lr * warmup_start_factor`` and rises linearly to ``base_lr`` over the first k calls
    of ``step`` (the values of ``LinearLR(start_factor=warmup_start_factor, total_iters=k)``);
    metrics passed during warm-up are ignored, and plateau tracking starts afterwards.
    """

    def __init__(self, optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0, min_lr=0.0,
                 eps: float = 1e-8, warmup_epochs: int = 0, warmup_start_factor: float = 0.1):
        _check_optimizer(optimizer)
        self.factor = _check.number(factor, "factor", lo=0.0, hi=1.0, hi_open=True)
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        for name, v in (("patience", patience), ("cooldown", cooldown), ("warmup_epochs", warmup_epochs)):
            _check.integer(v, name, lo=0)
        self.optimizer = optimizer
        n = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n:
                raise ValueError(f"expected {n} min_lrs (one per param group), got {len(min_lr)}")
            self.min_lrs = [float(v) for v in min_lr]
        else:
            self.min_lrs = [float(min_lr)] * n
        self.mode, self.threshold, self.threshold_mode = mode, float(threshold), threshold_mode
        self.patience, self.cooldown, self.eps = patience, cooldown, float(eps)
        self.warmup_epochs = warmup_epochs
        self.warmup_start_factor = _check.number(warmup_start_factor, "warmup_start_factor", lo=0.0, lo_open=True,
                                                hi=1.0)
        self.last_epoch = 0
        self._step_count = 0
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        if warmup_epochs:
            for g, b in zip(optimizer.param_groups, self.base_lrs):
                g["lr"] = b * self.warmup_start_factor
        self._reset()
        self._last_lr = self._group_lrs()

    def _reset(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _is_better(self, a, best) -> bool:
        if self.mode == "min":
            return a < best * (1.0 - self.threshold) if self.threshold_mode == "rel" else a < best - self.threshold
        return a > best * (1.0 + self.threshold) if self.threshold_mode == "rel" else a > best + self.threshold

    def step(self, metrics=None) -> None:
        """Record this epoch's metric (e.g. validation loss) and reduce the lr on a plateau."""
        self._step_count += 1
        self.last_epoch += 1
        if self.last_epoch <= self.warmup_epochs:
            s = self.warmup_start_factor
            f = s + (1.0 - s) * self.last_epoch / self.warmup_epochs
            for g, b in zip(self.optimizer.param_groups, self.base_lrs):
                g["lr"] = b * f
            self._last_lr = self._group_lrs()
            return
        if metrics is None:
            raise TypeError("ReduceLROnPlateau.step(metrics) needs the monitored value")
        current = float(metrics)
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for i, g in enumerate(self.optimizer.param_groups):
                old = float(g["lr"])
                new = max(old * self.factor, self.min_lrs[i])
                if old - new > self.eps:
                    g["lr"] = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self._group_lrs()
