"""The checkpoint file: one ``.npz`` whose arrays are entries named by where they live
(``model/0.weight``, ``optimizer/state/0/exp_avg``, ...) and whose everything else (scalars,
strings, lists, the structure) is one JSON document in the entry ``__meta__`` that refers to those
arrays by name; the entry ``__checksum__`` is the SHA-256 of the document and of every array's
name, dtype, shape and bytes. Read with ``allow_pickle=False``.

Writes go to a temporary file ``.<name>.<pid>.<random>.tmp`` beside the target, renamed over it
when complete; a save removes the temporary files that processes no longer alive left behind
(killed while saving).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
import zlib

import numpy as np

from .. import backend

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
