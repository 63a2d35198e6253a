"""Optimizers and per-epoch LR schedules by name, with each one's defaults and the hyper-parameters
it takes (what the command line builds from its flags), beside the classes they build."""
from __future__ import annotations

from . import lr_scheduler as _ls
from .adaptive import Adagrad, Adam, AdamW, RMSprop
from .sgd import SGD, NormalizedSGD

# name -> (class, fixed keyword arguments, {hyper-parameter: default}); the defaults are those of
# the lesson's recipes, where they differ from the class's own.
_OPTIMIZERS = {
    "sgd": (SGD, {}, {"lr": 0.05, "weight_decay": 0.0}),
    "momentum": (SGD, {"nesterov": True}, {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.0}),
    "normalized": (NormalizedSGD, {}, {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.0}),
    "adagrad": (Adagrad, {}, {"lr": 0.05, "weight_decay": 0.0}),
    "rmsprop": (RMSprop, {}, {"lr": 1e-3, "momentum": 0.0, "weight_decay": 0.0}),
    "adam": (Adam, {}, {"lr": 3e-3, "weight_decay": 0.0}),
    "adamw": (AdamW, {}, {"lr": 3e-3, "weight_decay": 1e-2}),
}
OPTIMIZERS = tuple(_OPTIMIZERS)

# name -> the hyper-parameters of make_scheduler that the schedule uses (warmup_epochs: all)
_SCHEDULES = {
    "exponential": ("lr_decay",),
    "step": ("lr_decay", "step_size"),
    "cosine": (),
    "plateau": ("lr_decay",),
    "none": (),
}
SCHEDULES = tuple(_SCHEDULES)


def _known(name, table, what):
    if name not in table:
        raise ValueError(f"unknown {what} {name!r}; expected one of {', '.join(table)}")


def optimizer_defaults(name) -> dict:
    """The hyper-parameters optimizer ``name`` takes, with their defaults."""
    _known(name, _OPTIMIZERS, "optimizer")
    return dict(_OPTIMIZERS[name][2])


def make_optimizer(name, params, **hyper):
    """Optimizer ``name`` over ``params``; hyper-parameters left out (or None) take the defaults of
    ``optimizer_defaults(name)``, one it does not take is refused. ``max_grad_norm`` is passed on."""
    defaults = optimizer_defaults(name)
    clip = hyper.pop("max_grad_norm", None)
    unknown = sorted(k for k, v in hyper.items() if v is not None and k not in defaults)
    if unknown:
        raise ValueError(f"optimizer {name!r} does not take {', '.join(unknown)}; it takes "
                         f"{', '.join(sorted(defaults))}")
    cls, fixed, _ = _OPTIMIZERS[name]
    values = {k: defaults[k] if hyper.get(k) is None else hyper[k] for k in defaults}
    return cls(params, **fixed, **values, max_grad_norm=clip)


def schedule_parameters(name) -> tuple:
    """The make_scheduler arguments schedule ``name`` uses, besides ``warmup_epochs``."""
    _known(name, _SCHEDULES, "schedule")
    return _SCHEDULES[name]


def make_scheduler(name, optimizer, *, epochs, lr_decay=0.98, step_size=10, warmup_epochs=0):
    """The per-epoch schedule ``name`` for ``optimizer`` (None for "none" without warm-up):
    exponential (x lr_decay per epoch), step (x lr_decay every step_size epochs), cosine
    (annealed to 0 at ``epochs``), plateau (x lr_decay after 3 epochs without improvement) or
    none; ``warmup_epochs`` > 0 puts a linear warm-up from 10% of the lr in front."""
    schedule_parameters(name)
    warm = int(warmup_epochs)
    if name == "plateau":
        return _ls.ReduceLROnPlateau(optimizer, factor=lr_decay if lr_decay < 1 else 0.5, patience=3,
                                     warmup_epochs=warm)
    main = {"none": lambda: None,
            "exponential": lambda: _ls.ExponentialLR(optimizer, lr_decay),
            "step": lambda: _ls.StepLR(optimizer, step_size, lr_decay),
            "cosine": lambda: _ls.CosineAnnealingLR(optimizer, max(1, epochs - warm))}[name]()
    if not warm:
        return main
    warmup = _ls.LinearLR(optimizer, start_factor=0.1, total_iters=warm)
    return warmup if main is None else _ls.SequentialLR(optimizer, [warmup, main], milestones=[warm])
