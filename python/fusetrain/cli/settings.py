"""From a parsed ``train`` command line to the run's resolved settings: the preset or the resumed
checkpoint's settings applied, per-optimizer defaults filled in, and every flag that does not
apply to the chosen model, optimizer or schedule refused (UsageError, before anything runs)."""
from __future__ import annotations

from ..models import registry
from ..optim import factory
from ..train import checkpoint as ckpt
from .parser import OPTIMIZER_BOUND, PRESETS, flag

# Flags that describe the run itself; on --resume everything else comes from the checkpoint.
RUN_FLAGS = ("epochs", "out", "quiet", "resume", "device", "backend", "debug")
_IDX_FLAGS = ("train_images", "train_labels", "test_images", "test_labels")


class UsageError(ValueError):
    """A flag that cannot be honoured; reported as one line naming it, exit status 2."""


def _same(a, b):
    norm = (lambda v: list(v) if isinstance(v, (tuple, list)) else v)
    return norm(a) == norm(b)


def saved_settings(path) -> dict:
    """The settings a ``fusetrain train`` checkpoint was written with."""
    try:
        saved = ckpt.read(path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--resume: {exc}") from exc
    cfg = ((saved.get("extra") or {}).get("metadata") or {}).get("cli_args")
    if not isinstance(cfg, dict) or not cfg:
        raise UsageError(f"--resume: {path} was not written by 'fusetrain train' (no saved settings)")
    return cfg


def _apply_checkpoint(args, explicit):
    cfg = saved_settings(args.resume)
    for k in sorted(explicit):
        if k not in RUN_FLAGS and k in cfg and not _same(getattr(args, k), cfg[k]):
            raise UsageError(f"{flag(k, getattr(args, k))}: a resumed run keeps the checkpoint's settings "
                             f"({k} {cfg[k]!r}); drop the flag or start a new run")
    for k, v in cfg.items():
        if k not in RUN_FLAGS and hasattr(args, k):
            setattr(args, k, tuple(v) if k in ("hidden", "widths") and v is not None else v)
    if "epochs" not in explicit and isinstance(cfg.get("epochs"), int):
        args.epochs = cfg["epochs"]


def _apply_preset(args, explicit):
    values = PRESETS[args.preset][1]
    other_optimizer = "optimizer" in explicit and args.optimizer != values.get("optimizer", args.optimizer)
    for k, v in values.items():
        if k in explicit or (other_optimizer and k in OPTIMIZER_BOUND):
            continue
        setattr(args, k, v)


def _refuse_foreign(given, takes, args, owner):
    """Refuse each flag in ``given`` that ``owner`` (e.g. '--model resnet') does not take."""
    for k in given:
        if k not in takes:
            names = ", ".join(flag(f) for f in takes) or "none"
            raise UsageError(f"{flag(k, getattr(args, k))}: {owner} does not take it (it takes: {names})")


def resolve(args, explicit):
    """Apply --preset or, with --resume, the checkpoint's settings; then check the flags against
    each other, the model, the optimizer and the schedule. ``explicit``: the options given on the
    command line. Returns ``args``; defaults that depend on the optimizer stay None here (see
    ``fill_defaults``)."""
    if args.resume:
        _apply_checkpoint(args, explicit)
    elif args.preset is not None:
        _apply_preset(args, explicit)
    spec = registry.get(args.model)
    _refuse_foreign([k for k in registry.OPTIONS if k in explicit], spec.options, args, f"--model {args.model}")
    if args.widths is not None and spec.n_widths is not None and len(args.widths) != spec.n_widths:
        raise UsageError(f"--widths: --model {args.model} takes {spec.n_widths} comma-separated widths, got "
                         f"{','.join(map(str, args.widths))}")
    hyper = factory.optimizer_defaults(args.optimizer)
    _refuse_foreign([k for k in ("momentum",) if k in explicit], tuple(hyper), args, f"--optimizer {args.optimizer}")
    uses = factory.schedule_parameters(args.schedule)
    _refuse_foreign([k for k in ("lr_decay", "step_size") if k in explicit], uses + ("warmup_epochs",), args,
                    f"--schedule {args.schedule}")
    if args.swa_lr is not None and args.swa_start is None:
        raise UsageError("--swa-lr needs --swa-start")
    if args.swa_start is not None and args.swa_start >= args.epochs:
        raise UsageError(f"--swa-start: epoch {args.swa_start} (0-based) is not before the end of --epochs "
                         f"{args.epochs}, so nothing would be averaged")
    if args.dataset != "idx":
        for k in _IDX_FLAGS:
            if getattr(args, k):
                raise UsageError(f"{flag(k)}: only used with --dataset idx (the dataset is {args.dataset})")
    elif not args.train_images or not args.train_labels:
        raise UsageError("--dataset idx needs --train-images and --train-labels")
    elif bool(args.test_images) != bool(args.test_labels):
        raise UsageError(f"{'--test-labels' if args.test_images else '--test-images'}: pass both --test-images "
                         "and --test-labels (or neither)")
    return args


def fill_defaults(args):
    """Replace the optimizer-dependent defaults left None by the values the run uses, and set the
    hyper-parameters the optimizer does not take to None, so config.json holds what ran."""
    hyper = factory.optimizer_defaults(args.optimizer)
    for k in ("lr", "momentum", "weight_decay"):
        if k not in hyper:
            setattr(args, k, None)
        elif getattr(args, k) is None:
            setattr(args, k, hyper[k])
    return args


def settings_dict(args) -> dict:
    """The settings as config.json and checkpoints store them (JSON types)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items() if k != "command"}
