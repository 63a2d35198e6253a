"""Checkpoints: one ``.npz`` holding a model's parameters and buffers, optimizer, scheduler and
callback state, the RNG streams, the epoch and the history, written atomically and verified by a
SHA-256 checksum; loaded with ``allow_pickle=False``.

Layout: every array is an npz entry named by where it lives (``model/0.weight``,
``optimizer/state/0/exp_avg``, ...); everything else (scalars, strings, lists, the structure)
is one JSON document in the entry ``__meta__`` that refers to those arrays by name; the entry
``__checksum__`` is the SHA-256 of the document and of every array's name, dtype, shape and bytes.
Loading validates the whole file (every field's type and range, and that it matches the model,
optimizer, scheduler and callbacks) before changing anything, and rolls back if an assignment
still fails.

Writes go to a temporary file ``.<name>.<pid>.<random>.tmp`` beside the target, renamed over it
when complete; a save removes the temporary files that processes no longer alive left behind
(killed while saving).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
import zipfile
import zlib

import numpy as np

from .. import backend
from .. import random as frandom

FORMAT = "fusetrain-checkpoint"
VERSION = 1
_META, _SUM = "__meta__", "__checksum__"


class CheckpointError(ValueError):
    """A checkpoint file is unreadable (truncated, corrupt, another format) or does not match
    the model / optimizer / scheduler it is being loaded into."""


# --------------------------------------------------------------------------- encoding
def _encode(obj, name, arrays):
    """obj -> JSON-able structure; arrays are moved into ``arrays`` and referenced by name."""
    if hasattr(obj, "shape") and hasattr(obj, "dtype") and not isinstance(obj, np.generic):
        arr = obj.get() if backend.is_cuda_array(obj) else np.array(obj, copy=True)
        if arr.dtype.hasobject:
            raise TypeError(f"cannot store an object array in a checkpoint ({name})")
        while name in arrays:  # keys such as 0 and "0" of one dict give the same path
            name += "+"
        arrays[name] = arr
        return {"__array__": name}
    if isinstance(obj, np.generic):
        return _encode(obj.item(), name, arrays)
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, f"{name}/{k}", arrays) for k, v in obj.items()}
        pairs = []
        for k, v in obj.items():
            if isinstance(k, np.generic):
                k = k.item()
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise TypeError(f"cannot store a dict key of type {type(k).__name__} in a checkpoint ({name})")
            pairs.append([k, _encode(v, f"{name}/{k}", arrays)])
        return {"__dict__": pairs}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{name}/{i}", arrays) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{name}/{i}", arrays) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint ({name}); "
                    "states must be arrays, numbers, strings, lists, tuples and dicts")


def _decode(obj, arrays):
    if isinstance(obj, dict):
        if "__array__" in obj:
            name = obj["__array__"]
            if name not in arrays:
                raise CheckpointError(f"checkpoint refers to a missing array entry {name!r}")
            return arrays[name]
        if "__dict__" in obj:
            return {k: _decode(v, arrays) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_decode(v, arrays) for v in obj["__tuple__"])
        return {k: _decode(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    return obj


def _checksum(meta_text: str, arrays: dict) -> str:
    h = hashlib.sha256(meta_text.encode("utf-8"))
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode("utf-8"))
        h.update(a.data if a.size else b"")
    return h.hexdigest()


# --------------------------------------------------------------------------- file I/O
def _atomic_write(path, arrays: dict) -> None:
    """Write the npz to a temporary file in the destination folder, fsync it, then rename it over
    ``path`` (atomic on POSIX and Windows): readers see the old file or the new one, never a part."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)  # as Keras's ModelCheckpoint does for a new run folder
    prefix = "." + os.path.basename(path) + "."
    _remove_stale_temps(folder, prefix)
    fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}.", suffix=".tmp", dir=folder)
    try:
        # mkstemp creates the file 0600; give it the mode a plain open() would (0666 less the umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable; not every platform lets us open a folder
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's process
        return True
    return True


def _remove_stale_temps(folder, prefix) -> None:
    """Delete ``<prefix><pid>.<random>.tmp`` files of processes that are gone (killed while
    saving). Live ones, this process's included (another thread may be saving), stay."""
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        try:
            os.unlink(os.path.join(folder, name))
        except OSError:
            pass


def write(path, meta: dict) -> None:
    """Encode ``meta`` (arrays anywhere inside), add format/version and checksum, write atomically."""
    arrays: dict = {}
    body = {k: _encode(v, k, arrays) for k, v in dict(meta, format=FORMAT, version=VERSION).items()}
    for reserved in (_META, _SUM):
        if reserved in arrays:
            raise ValueError(f"a checkpoint entry may not be named {reserved!r}")
    text = json.dumps(body, sort_keys=False)
    out = dict(arrays)
    out[_META] = np.array(text)
    out[_SUM] = np.array(_checksum(text, arrays))
    _atomic_write(path, out)


def read(path) -> dict:
    """Read and verify a checkpoint; returns its decoded content (arrays as NumPy arrays).
    Raises CheckpointError when the file is truncated, corrupt, modified or not a checkpoint."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    with open(path, "rb") as fh:
        head = fh.read(6)
    if head.startswith(b"\x93NUMPY"):
        raise CheckpointError(f"{path}: not a fusetrain checkpoint (a single .npy array, not a .npz archive)")
    if not head.startswith(b"PK"):  # np.load would guess a pickle and talk about allow_pickle
        raise CheckpointError(f"{path}: the file is truncated, corrupt or not a .npz checkpoint (it does not "
                              "start with a zip archive's header)")
    try:
        # np.load leaks the file it opened when the zip directory is unreadable; this `with` owns it
        with open(path, "rb") as fh:
            f = np.load(fh, allow_pickle=False)
            entries = None
            if isinstance(f, np.lib.npyio.NpzFile):
                with f:
                    entries = {k: f[k] for k in f.files}
    # zipfile raises RuntimeError / NotImplementedError for corrupt flag, method and version fields
    except (OSError, ValueError, EOFError, KeyError, RuntimeError, zipfile.BadZipFile, zlib.error) as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({type(exc).__name__}: {exc}); the file is "
                              "truncated, corrupt or not a .npz checkpoint") from exc
    if entries is None:
        raise CheckpointError(f"{path}: not a fusetrain checkpoint (a single .npy array, not a .npz archive)")
    if _META not in entries or _SUM not in entries:
        raise CheckpointError(f"{path}: not a fusetrain checkpoint (no {_META!r}/{_SUM!r} entries)")
    text = str(entries.pop(_META))
    stored = str(entries.pop(_SUM))
    if _checksum(text, entries) != stored:
        raise CheckpointError(f"{path}: checksum mismatch, the checkpoint is corrupt or was modified")
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise CheckpointError(f"{path}: unreadable metadata ({exc})") from exc
    if not isinstance(body, dict):
        raise CheckpointError(f"{path}: not a fusetrain checkpoint (its metadata is a JSON {type(body).__name__}, "
                              "not an object)")
    if body.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a fusetrain checkpoint (format {body.get('format')!r})")
    if body.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {body.get('version')!r} is not supported "
                              f"(this fusetrain reads version {VERSION})")
    try:
        return _decode(body, entries)
    except (TypeError, ValueError) as exc:  # a "__dict__" that is not a list of pairs, an unhashable key
        raise CheckpointError(f"{path}: malformed metadata ({type(exc).__name__}: {exc})") from exc


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


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


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
    entry("epoch", epoch, _is_int(epoch) and epoch >= 0, "a non-negative int")
    hist = ckpt.get("history", {})
    entry("history", hist, isinstance(hist, dict) and all(
        isinstance(k, str) and isinstance(v, list) and all(_is_real(x) for x in v) for k, v in hist.items()),
        "a dict of metric names to lists of numbers")
    epochs = ckpt.get("history_epochs", [])
    entry("history_epochs", epochs, isinstance(epochs, list) and all(_is_int(e) and e >= 0 for e in epochs),
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
        return _is_real(v) and not v != v

    if isinstance(cb, C.EarlyStopping):
        need("wait", lambda v: _is_int(v) and v >= 0, "a non-negative int")
        need("stopped_epoch", lambda v: _is_int(v) and v >= -1, "an int >= -1")
        need("best_epoch", lambda v: _is_int(v) and v >= -1, "an int >= -1")
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
        need("n_averaged", lambda v: _is_int(v) and v >= 0, "a non-negative int")
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
