"""Checkpoints of training: a model's parameters and buffers, optimizer, scheduler and callback
state, the RNG streams, the epoch and the history, in one file (checkpoint_file: written
atomically, verified by a checksum). Loading validates the whole file -- every field's type and
range, and that it matches the model, optimizer, scheduler and callbacks -- before changing
anything, and rolls back if an assignment still fails.
"""
from __future__ import annotations

import copy
import json
import os

import numpy as np

from .. import random as frandom
from ..ops import _check
from .checkpoint_file import CheckpointError, read, write


# --------------------------------------------------------------------------- model / optimizer
def _callback_states(callbacks):
    out = []
    for cb in callbacks:
        fn = getattr(cb, "state_dict", None)
        state = fn() if callable(fn) else {}
        if state:
            out.append({"class": type(cb).__name__, "state": state})
    return out


def save_checkpoint(path, model, optimizer=None, scheduler=None, *, callbacks=(), epoch=0, history=None,
                    extra=None) -> None:
    """Write a checkpoint of ``model`` (parameters and buffers, PyTorch state_dict keys), and
    when given ``optimizer``/``scheduler`` state, callback states, ``epoch``, ``history``
    (a dict of lists or a History), user ``extra`` data, plus fusetrain's RNG streams."""
    hist = getattr(history, "history", history)
    hist_epochs = list(getattr(history, "epoch", range(len(next(iter(hist.values()), [])) if hist else 0)))
    meta = {
        "model": {"class": type(model).__name__, "state": model.state_dict()},
        "optimizer": None if optimizer is None else {"class": type(optimizer).__name__,
                                                     "state": optimizer.state_dict()},
        "scheduler": None if scheduler is None else {"class": type(scheduler).__name__,
                                                     "state": scheduler.state_dict()},
        "callbacks": _callback_states(callbacks),
        "rng": frandom.get_rng_state(),
        "epoch": int(epoch),
        "history": {k: [float(v) for v in vals] for k, vals in (hist or {}).items()},
        "history_epochs": [int(e) for e in hist_epochs],
        "extra": extra,
    }
    write(path, meta)


def _check_layout(ckpt, path):
    """The document's own fields: their types and ranges (a file can pass its checksum and still
    hold anything, e.g. when written by hand)."""
    def entry(name, value, ok, expected):
        if not ok:
            raise CheckpointError(f"{path}: {name} must be {expected}, got {value!r:.200}")

    def stateful(name, optional):
        v = ckpt.get(name)
        if v is None and optional:
            return
        entry(name, v, isinstance(v, dict) and isinstance(v.get("class"), str) and isinstance(v.get("state"), dict),
              'a dict with a "class" string and a "state" dict')

    stateful("model", False)
    stateful("optimizer", True)
    stateful("scheduler", True)
    cbs = ckpt.get("callbacks", [])
    entry("callbacks", cbs, isinstance(cbs, list) and all(
        isinstance(c, dict) and isinstance(c.get("class"), str) and isinstance(c.get("state"), dict) for c in cbs),
        'a list of dicts with a "class" string and a "state" dict')
    epoch = ckpt.get("epoch", 0)
    entry("epoch", epoch, _check.is_int(epoch) and epoch >= 0, "a non-negative int")
    hist = ckpt.get("history", {})
    entry("history", hist, isinstance(hist, dict) and all(
        isinstance(k, str) and isinstance(v, list) and all(_check.is_real(x) for x in v) for k, v in hist.items()),
        "a dict of metric names to lists of numbers")
    epochs = ckpt.get("history_epochs", [])
    entry("history_epochs", epochs, isinstance(epochs, list) and all(_check.is_int(e) and e >= 0 for e in epochs),
          "a list of non-negative ints")
    for k, v in hist.items():
        entry(f"history[{k!r}]", v, len(v) == len(epochs), f"a list of {len(epochs)} values (one per epoch)")


def _check_model(ckpt, model, path):
    saved = ckpt["model"]["state"]
    current = model.state_dict()
    missing = [k for k in current if k not in saved]
    unexpected = [k for k in saved if k not in current]
    not_arrays = [k for k in current if k in saved and not isinstance(saved[k], np.ndarray)]
    shapes = [f"{k}: checkpoint {tuple(np.shape(saved[k]))}, model {tuple(current[k].shape)}"
              for k in current if k in saved and tuple(np.shape(saved[k])) != tuple(current[k].shape)]
    kinds = [f"{k}: checkpoint {np.asarray(saved[k]).dtype}, model {current[k].dtype}"
             for k in current if k in saved and np.asarray(saved[k]).dtype.kind != current[k].dtype.kind]
    problems = []
    if missing:
        problems.append("missing from the checkpoint: " + ", ".join(missing))
    if unexpected:
        problems.append("not in the model: " + ", ".join(map(str, unexpected)))
    if not_arrays:
        problems.append("not arrays: " + ", ".join(not_arrays))
    if shapes:
        problems.append("shape mismatch: " + "; ".join(shapes))
    if kinds:
        problems.append("dtype mismatch: " + "; ".join(kinds))
    if problems:
        raise CheckpointError(f"{path}: the checkpoint (saved from a {ckpt['model']['class']}) does not match this "
                              f"{type(model).__name__}: " + " | ".join(problems))
    return current


def _check_optimizer(ckpt, optimizer, path):
    saved = ckpt["optimizer"]
    name = type(optimizer).__name__
    if saved["class"] != name:
        raise CheckpointError(f"{path}: the checkpoint holds {saved['class']} state, the optimizer is a {name}")
    state = saved["state"]
    groups = state.get("param_groups", [])
    if isinstance(groups, list) and len(groups) != len(optimizer.param_groups):
        raise CheckpointError(f"{path}: the checkpoint's optimizer has {len(groups)} parameter groups, this one has "
                              f"{len(optimizer.param_groups)}")
    try:
        optimizer.checked_state_dict(state)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: optimizer {exc}") from exc


def _check_scheduler(ckpt, scheduler, path):
    saved = ckpt["scheduler"]
    if saved["class"] != type(scheduler).__name__:
        raise CheckpointError(f"{path}: the checkpoint holds {saved['class']} state, the scheduler is a "
                              f"{type(scheduler).__name__}")
    try:
        scheduler.check_state_dict(saved["state"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: {exc}") from exc


def _check_rng(rng, path):
    """seed in [0, 2**64), a non-negative Philox offset that is a multiple of 4 (offsets advance in
    blocks of 4 draws) and a state NumPy's PCG64 accepts."""
    try:
        seed, offset = int(str(rng["seed"])), int(str(rng["philox_offset"]))
        if not 0 <= seed < 2**64:
            raise ValueError(f"seed must be in [0, 2**64), got {seed}")
        if offset < 0 or offset % 4:
            raise ValueError(f"philox_offset must be a non-negative multiple of 4, got {offset}")
        np.random.PCG64().state = json.loads(str(rng["generator"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid RNG state in the checkpoint ({type(exc).__name__}: {exc})") from exc


def _check_callback_state(cb, state, model):
    """The built-in callbacks' states: each entry of the right type and range, arrays that fit
    the model. Raises ValueError naming the entry."""
    from .. import callbacks as C  # noqa: PLC0415 (callbacks import train lazily too)

    def need(key, ok, expected):
        if key not in state:
            raise ValueError(f"{key!r} is missing")
        if not ok(state[key]):
            raise ValueError(f"{key!r} must be {expected}, got {state[key]!r:.200}")

    def real(v):
        return _check.is_real(v) and not v != v

    if isinstance(cb, C.EarlyStopping):
        need("wait", lambda v: _check.is_int(v) and v >= 0, "a non-negative int")
        need("stopped_epoch", lambda v: _check.is_int(v) and v >= -1, "an int >= -1")
        need("best_epoch", lambda v: _check.is_int(v) and v >= -1, "an int >= -1")
        need("best", real, "a number")
        current = model.state_dict()
        need("best_weights", lambda v: v is None or (
            isinstance(v, dict) and set(v) == set(current) and all(
                isinstance(v[k], np.ndarray) and v[k].shape == current[k].shape
                and v[k].dtype.kind == current[k].dtype.kind for k in current)),
            f"None or the {type(model).__name__}'s state (its keys, shapes and dtypes)")
    elif isinstance(cb, C.ModelCheckpoint):
        need("best", real, "a number")
    elif isinstance(cb, (C.EMA, C.SWA)):
        size = sum(p.size for p in model.parameters())
        need("n_averaged", lambda v: _check.is_int(v) and v >= 0, "a non-negative int")
        need("average", lambda v: v is None or (isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.size == size),
             f"None or a float array of the model's {size} parameter values")


def _match_callbacks(saved, callbacks, model, path):
    """Pair each callback that can load state with the saved state of the same class, in order;
    the built-in callbacks' states are checked."""
    pools: dict = {}
    for entry in saved:
        pools.setdefault(entry["class"], []).append(entry["state"])
    pairs = []
    for cb in callbacks:
        if callable(getattr(cb, "load_state_dict", None)) and pools.get(type(cb).__name__):
            state = pools[type(cb).__name__].pop(0)
            try:
                _check_callback_state(cb, state, model)
            except ValueError as exc:
                raise CheckpointError(f"{path}: {type(cb).__name__} state: {exc}") from exc
            pairs.append((cb, state))
    return pairs


def load_checkpoint(path, model, optimizer=None, scheduler=None, *, callbacks=(), restore_rng=True,
                    strict=True, check_extra=None) -> dict:
    """Restore what ``save_checkpoint`` wrote into ``model`` (and ``optimizer``, ``scheduler``,
    ``callbacks`` and fusetrain's RNG streams). Everything is validated first (keys, shapes,
    dtypes, optimizer class and groups, every hyper-parameter and state entry, scheduler, RNG,
    callback states, epoch and history); on any problem a CheckpointError naming the field is
    raised and nothing has changed. With ``strict`` a checkpoint holding optimizer/scheduler
    state that was not passed here (or the reverse) is refused too. ``check_extra``: a function
    of the saved ``extra`` that raises (TypeError, ValueError, KeyError, AttributeError) when the
    caller cannot use it, called before anything changes.

    Returns ``{"epoch", "history", "history_epochs", "extra"}``.
    """
    ckpt = read(path)
    path = os.fspath(path)
    _check_layout(ckpt, path)
    model_snapshot = _check_model(ckpt, model, path)
    for what, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is None and ckpt.get(what) is not None and strict:
            raise CheckpointError(f"{path}: the checkpoint holds {what} state ({ckpt[what]['class']}) but no {what} "
                                  "was given (pass it, or strict=False to ignore it)")
        if obj is not None and ckpt.get(what) is None:
            raise CheckpointError(f"{path}: the checkpoint holds no {what} state to load into the "
                                  f"{type(obj).__name__}")
    if optimizer is not None:
        _check_optimizer(ckpt, optimizer, path)
    if scheduler is not None:
        _check_scheduler(ckpt, scheduler, path)
    if restore_rng:
        _check_rng(ckpt.get("rng"), path)
    pairs = _match_callbacks(ckpt.get("callbacks", []), callbacks, model, path)
    if check_extra is not None:
        try:
            check_extra(ckpt.get("extra"))
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise CheckpointError(f"{path}: extra: {type(exc).__name__}: {exc}") from exc

    opt_snapshot = optimizer.state_dict() if optimizer is not None else None
    sched_snapshot = copy.deepcopy(scheduler.state_dict()) if scheduler is not None else None
    cb_snapshots = [(cb, cb.state_dict(), getattr(cb, "_restored", None)) for cb, _ in pairs]
    rng_snapshot = frandom.get_rng_state()
    try:
        model.load_state_dict(ckpt["model"]["state"])
        if optimizer is not None:
            optimizer.load_state_dict(ckpt["optimizer"]["state"])
        if scheduler is not None:
            scheduler.load_state_dict(ckpt["scheduler"]["state"])
        for cb, state in pairs:
            cb.load_state_dict(state)
        if restore_rng:
            frandom.set_rng_state(ckpt["rng"])
    except Exception as exc:
        model.load_state_dict(model_snapshot)
        if optimizer is not None:
            optimizer.load_state_dict(opt_snapshot)
        if scheduler is not None:
            scheduler.load_state_dict(sched_snapshot)
        for cb, state, restored in cb_snapshots:
            cb.load_state_dict(state)
            if restored is not None:
                cb._restored = restored  # putting the old state back is an undo, not a resume
        frandom.set_rng_state(rng_snapshot)
        raise CheckpointError(f"{path}: loading failed and was rolled back ({type(exc).__name__}: {exc})") from exc
    return {"epoch": int(ckpt.get("epoch", 0)), "history": ckpt.get("history", {}),
            "history_epochs": ckpt.get("history_epochs", []), "extra": ckpt.get("extra")}


def load_weights(path, model) -> None:
    """Load only the model's parameters and buffers from a checkpoint (e.g. for evaluation)."""
    ckpt = read(path)
    _check_layout(ckpt, os.fspath(path))
    _check_model(ckpt, model, os.fspath(path))
    model.load_state_dict(ckpt["model"]["state"])
