"""Parameter: a trainable array (``.data``) with its gradient (``.grad``), both possibly views
into a flat arena shared by the whole model (see ``fusetrain.nn.arena``)."""
from __future__ import annotations

import numpy as np

from .. import backend
from . import inference


def _as_array(value, dtype, like=None):
    """Convert value (numpy/cupy array, torch tensor, nested lists) to a C-contiguous array."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        value = value.detach().cpu().numpy()
    if backend.is_cuda_array(value) or (like is not None and backend.is_cuda_array(like)):
        xp = backend.cupy_module()
        return xp.ascontiguousarray(xp.asarray(value, dtype=dtype))
    return np.array(value, dtype=dtype, order="C", copy=True)


class Parameter:
    """A trainable array. ``.data`` holds the values, ``.grad`` an array of the same shape
    (zero-initialised) into which layers accumulate gradients.

    ``Parameter(array)`` copies ``array`` as float32 (pass ``dtype=numpy.float64`` for gradient
    checks under the NumPy backend). Assigning ``p.data = x`` or ``p.grad = x`` copies ``x`` into
    the existing buffer (so a parameter that lives in an arena stays there); in-place updates of
    ``p.data`` / ``p.grad`` work as usual.
    """

    __slots__ = ("_data", "_grad", "_arena", "_offset", "__weakref__")

    def __init__(self, data, dtype=None):
        if isinstance(data, Parameter):
            data = data.data
        dtype = np.float32 if dtype is None else np.dtype(dtype)
        if np.dtype(dtype).kind != "f":
            raise TypeError(f"Parameter dtype must be a floating type, got {np.dtype(dtype).name}")
        arr = _as_array(data, dtype)
        self._data = arr
        self._grad = backend.array_module(arr).zeros_like(arr)
        self._arena = None
        self._offset = 0

    # -- values and gradient -------------------------------------------------------------
    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, value):
        self._assign(self._data, value, "data")

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is None:
            self._grad.fill(0)
            return
        self._assign(self._grad, value, "grad")

    @staticmethod
    def _assign(target, value, what):
        if isinstance(value, Parameter):
            value = value.data
        shape = tuple(getattr(value, "shape", np.shape(value)))
        if shape != tuple(target.shape):
            raise ValueError(f"cannot assign an array of shape {shape} to Parameter.{what} of shape "
                             f"{tuple(target.shape)}")
        if value is target:
            return
        if hasattr(value, "detach") and hasattr(value, "cpu"):
            value = value.detach().cpu().numpy()
        if backend.is_cuda_array(target) and not backend.is_cuda_array(value):
            value = backend.cupy_module().asarray(value)
        elif not backend.is_cuda_array(target) and backend.is_cuda_array(value):
            value = value.get()
        target[...] = value

    def _bind(self, data_view, grad_view, arena=None, offset=0):
        """Rebind .data/.grad to new storage (used by arenas and Module.to)."""
        inference.bump()  # compiled eval plans hold the old arrays
        self._data = data_view
        self._grad = grad_view
        self._arena = arena
        self._offset = offset

    # -- array-like conveniences -----------------------------------------------------------
    @property
    def shape(self):
        return self._data.shape

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def ndim(self):
        return self._data.ndim

    @property
    def size(self):
        return int(self._data.size)

    def numel(self) -> int:
        return int(self._data.size)

    def __array__(self, dtype=None, copy=None):
        arr = self._data.get() if backend.is_cuda_array(self._data) else self._data
        if dtype is not None and np.dtype(dtype) != arr.dtype:
            return arr.astype(dtype)
        return arr.copy() if copy else arr

    def zero_grad(self) -> None:
        self._grad.fill(0)

    def __repr__(self):
        device = "cuda" if backend.is_cuda_array(self._data) else "cpu"
        extra = f", device={device}" if device != "cpu" else ""
        return f"Parameter(shape={tuple(self._data.shape)}, dtype={self._data.dtype}{extra})"
