"""Flat parameter arenas: one contiguous buffer for the values of many parameters and one for
their gradients, each Parameter's ``.data``/``.grad`` being a view (docs/architecture.md, section 3).

An optimizer step, the global gradient norm and zero_grad are then single calls over
contiguous memory.
"""
from __future__ import annotations

import numpy as np

from .. import backend


class Arena:
    """Owns ``data`` and ``grad`` (1-D, same dtype and device) and the parameters viewing them."""

    __slots__ = ("data", "grad", "params", "__weakref__")

    def __init__(self, params, device=None):
        params = list(params)
        if not params:
            raise ValueError("an arena needs at least one parameter")
        dtypes = {p.dtype for p in params}
        if len(dtypes) > 1:
            raise TypeError(f"all parameters of an arena must share one dtype, got {sorted(map(str, dtypes))}")
        dtype = dtypes.pop()
        if device is None:
            on_cuda = {backend.is_cuda_array(p.data) for p in params}
            if len(on_cuda) > 1:
                raise ValueError("all parameters of an arena must be on the same device")
            device = "cuda" if on_cuda.pop() else "cpu"
        xp = backend.cupy_module() if device == "cuda" else np
        total = sum(p.size for p in params)
        self.data = xp.empty(total, dtype=dtype)
        self.grad = xp.zeros(total, dtype=dtype)
        self.params = params
        offset = 0
        for p in params:
            n, shape = p.size, p.shape
            d, g = self.data[offset:offset + n], self.grad[offset:offset + n]
            d[...] = _to(p.data.reshape(-1), device)
            g[...] = _to(p.grad.reshape(-1), device)
            p._bind(d.reshape(shape), g.reshape(shape), self, offset)
            offset += n

    @property
    def size(self) -> int:
        return int(self.data.size)


def _to(arr, device):
    if device == "cuda" and not backend.is_cuda_array(arr):
        return backend.cupy_module().asarray(arr)
    if device == "cpu" and backend.is_cuda_array(arr):
        return arr.get()
    return arr


def segment(params):
    """(arena, start, stop) when ``params`` are consecutive views of one arena, in order; else None."""
    params = list(params)
    if not params:
        return None
    arena = params[0]._arena
    if arena is None:
        return None
    start = params[0]._offset
    pos = start
    for p in params:
        if p._arena is not arena or p._offset != pos:
            return None
        pos += p.size
    return arena, start, pos


def flatten_parameters(params, device=None):
    """Put ``params`` (deduplicated, in order) into one arena unless they already form a
    consecutive run of one; returns (data, grad) 1-D views covering exactly those params."""
    unique, seen = [], set()
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            unique.append(p)
    if not unique:
        raise ValueError("flatten_parameters got an empty parameter list")
    seg = segment(unique)
    if seg is None:
        arena = Arena(unique, device=device)
        return arena.data, arena.grad
    arena, start, stop = seg
    return arena.data[start:stop], arena.grad[start:stop]
