"""What the Trainer does to the data it is given: floating inputs in the model's dtype, integer
labels checked against the model's outputs before any step, batches gathered into reused buffers."""
from __future__ import annotations

import numpy as np

from .. import backend


def as_inputs(x, dtype, device, name="x"):
    """x as a C-contiguous array of `dtype` on `device` ("cpu" or "cuda"); integer data refused."""
    xp = backend.array_module(x) if backend.is_cuda_array(x) else np
    if not hasattr(x, "dtype"):
        x = np.asarray(x)
    if x.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}; scale integer data first "
                        "(e.g. fusetrain.data.scale(x) or x.astype('float32') / 255)")
    if x.ndim < 1 or len(x) == 0:
        raise ValueError(f"{name} must hold at least one sample, got shape {tuple(x.shape)}")
    if device == "cuda":
        xp = backend.cupy_module()
    x = xp.ascontiguousarray(x, dtype=dtype)
    return xp.asarray(x) if device == "cuda" else x


def as_targets(y, n, class_labels, dtype, device, name="y"):
    """y with one entry per sample: int64 class labels (class_labels), else floats of `dtype`."""
    if not hasattr(y, "dtype"):
        y = np.asarray(y)
    if len(y) != n:
        raise ValueError(f"{name} must have one entry per sample of x ({n}), got {len(y)}")
    if class_labels:
        if y.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integer class labels for cross-entropy, got dtype {y.dtype}")
        y = y.astype(np.int64, copy=False)
    elif y.dtype.kind == "f":
        y = y.astype(dtype, copy=False)
    if device == "cuda":
        return backend.cupy_module().asarray(y)
    return np.ascontiguousarray(y)


def check_samples_like(xv, x, name):
    """xv, when its samples have the shape of x's; else a ValueError before anything trains."""
    if tuple(xv.shape[1:]) != tuple(x.shape[1:]):
        raise ValueError(f"{name} must hold samples of shape {tuple(x.shape[1:])} as x does, got "
                         f"{tuple(xv.shape[1:])}; nothing was trained")
    return xv


def check_labels(y, classes, name="y"):
    """Every label in [0, classes), or ValueError naming the first one outside (and its index)."""
    xp = backend.array_module(y)
    bad = xp.flatnonzero((y < 0) | (y >= classes))
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"{name} holds labels outside [0, {classes}) (the model's {classes} outputs): "
                         f"{name}[{i}] = {int(y[i])}, {len(bad)} such label(s) in all; nothing was trained")


class Gather:
    """a[idx] into a buffer reused across batches of the same size (no per-step allocation)."""

    def __init__(self):
        self._buffers = {}

    def __call__(self, a, idx, key):
        if backend.is_cuda_array(a):
            return a[idx]
        shape = (len(idx),) + a.shape[1:]
        buf = self._buffers.get(key)
        if buf is None or buf.shape != shape or buf.dtype != a.dtype:
            buf = self._buffers[key] = np.empty(shape, dtype=a.dtype)
        return np.take(a, idx, axis=0, out=buf)
