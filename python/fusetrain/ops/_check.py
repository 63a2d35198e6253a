"""Argument validation shared by the ops: clear messages naming the argument, what was expected
and what was given. In-place targets are never copied or cast behind the user's back."""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..backend import is_cuda_array


def _describe(x) -> str:
    if hasattr(x, "dtype") and hasattr(x, "shape"):
        kind = "cupy" if is_cuda_array(x) else "numpy"
        return f"{kind} array of dtype {x.dtype} and shape {tuple(x.shape)}"
    return f"{type(x).__name__}"


def array(x, name: str, *, dtype=np.float32, inplace: bool = False, shape=None, ndim=None,
          min_ndim=None):
    """Validate an array argument; returns it (C-contiguous, aligned) or raises TypeError/ValueError.

    Read-only inputs that are merely non-contiguous or misaligned (e.g. ``numpy.frombuffer`` at an
    odd offset) are copied (a copy the kernel needs anyway); in-place targets must already be
    C-contiguous, aligned and writable.
    """
    if type(x) is not np.ndarray and not (isinstance(x, np.ndarray) or is_cuda_array(x)):
        raise TypeError(f"{name} must be a numpy or cupy array, got {_describe(x)}")
    if x.dtype != np.dtype(dtype):
        # The NumPy twins also run in float64 (gradient checks of whole layers go through them).
        float64_ok = dtype == np.float32 and x.dtype == np.float64 and backend.get_backend() == "numpy"
        if not float64_ok:
            raise TypeError(f"{name} must have dtype {np.dtype(dtype).name}, got {_describe(x)}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got {_describe(x)}")
    if min_ndim is not None and x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got {_describe(x)}")
    if shape is not None and tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {_describe(x)}")
    if inplace:
        if not x.flags.c_contiguous:
            raise ValueError(
                f"{name} is updated in place and must be C-contiguous; got a non-contiguous "
                f"{_describe(x)} (pass a contiguous array, e.g. numpy.ascontiguousarray, and use it)"
            )
        if isinstance(x, np.ndarray) and not x.flags.writeable:
            raise ValueError(f"{name} is updated in place and must be writable; got a read-only array")
        if isinstance(x, np.ndarray) and not x.flags.aligned:
            raise ValueError(
                f"{name} is updated in place and must be aligned to its {x.dtype.itemsize}-byte elements; got a "
                f"misaligned {_describe(x)} (e.g. numpy.frombuffer at an odd offset; pass numpy.array({name}) "
                "and use it)")
    elif not x.flags.c_contiguous:
        x = x.copy(order="C") if is_cuda_array(x) else np.ascontiguousarray(x)
    elif isinstance(x, np.ndarray) and not x.flags.aligned:
        x = np.array(x, order="C")  # numpy.ascontiguousarray keeps a contiguous array's offset
    return x


def optional(x, name: str, **kw):
    return None if x is None else array(x, name, **kw)


def no_overlap(out, out_name: str, **inputs) -> None:
    """A kernel that writes `out` while it reads the inputs must not be given memory they share."""
    for name, x in inputs.items():
        if type(out) is np.ndarray and type(x) is np.ndarray and np.may_share_memory(out, x):
            raise ValueError(f"{out_name} must not overlap {name}")


def same_size(ref, ref_name: str, **others) -> None:
    for name, x in others.items():
        if x is not None and x.size != ref.size:
            raise ValueError(
                f"{name} must have the same number of elements as {ref_name} ({ref.size}), "
                f"got {_describe(x)}"
            )


def same_device(**arrays) -> None:
    if all(type(a) is np.ndarray or a is None for a in arrays.values()):
        return
    kinds = {name: is_cuda_array(a) for name, a in arrays.items() if a is not None}
    if len(set(kinds.values())) > 1:
        where = ", ".join(f"{n} on {'cuda' if c else 'cpu'}" for n, c in kinds.items())
        raise ValueError(f"all arrays must be on the same device; got {where}")


def is_int(v) -> bool:
    """An int or numpy integer, not a bool."""
    if type(v) is int:  # the common case, first (a bool's type is bool)
        return True
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def is_real(v) -> bool:
    """An int, float or numpy number, not a bool."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def number(v, name: str, *, lo=None, hi=None, lo_open=False, hi_open=False, finite=True) -> float:
    """A real within [lo, hi] (or open ends), finite unless finite=False; bools are refused."""
    if not is_real(v):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    v = float(v)
    if math.isnan(v):
        raise ValueError(f"{name} must not be NaN")
    if finite and math.isinf(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        bound = f"> {lo}" if lo_open else f">= {lo}"
        raise ValueError(f"{name} must be {bound}, got {v}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        bound = f"< {hi}" if hi_open else f"<= {hi}"
        raise ValueError(f"{name} must be {bound}, got {v}")
    return v


def integer(v, name: str, *, lo=None) -> int:
    """An int (numpy integers too; bools refused) >= lo, as a Python int: TypeError for anything
    else, ValueError for a value below lo."""
    kind = {None: "an int", 0: "a non-negative int", 1: "a positive int"}.get(lo, f"an int >= {lo}")
    if not is_int(v):
        raise TypeError(f"{name} must be {kind}, got {v!r}")
    if lo is not None and v < lo:
        raise ValueError(f"{name} must be {kind}, got {v!r}")
    return int(v)


def ints(v, n: int, name: str, lo: int) -> tuple:
    """An int or a sequence of n ints, each >= lo, as a tuple of n Python ints (a window's kernel size,
    stride, padding, dilation): TypeError for anything else, ValueError for a value below lo."""
    if type(v) is int:  # the common cases first: they run on every layer call
        if v >= lo:
            return (v,) * n
    elif type(v) is tuple and len(v) == n and all(type(a) is int and a >= lo for a in v):
        return v
    vals = tuple(v) if isinstance(v, (tuple, list)) else (v,) * n
    if len(vals) != n or not all(is_int(a) for a in vals):
        raise TypeError(f"{name} must be an int or a sequence of {n} ints, got {v!r}")
    if any(a < lo for a in vals):
        raise ValueError(f"{name} must be >= {lo}, got {v!r}")
    return tuple(int(a) for a in vals)


def probability(p, name: str = "p") -> float:
    """Dropout probability: 0 <= p < 1."""
    return number(p, name, lo=0.0, hi=1.0, hi_open=True)


def seed_offset(seed, offset) -> tuple[int, int]:
    if not is_int(seed) or not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")
    if not is_int(offset) or not 0 <= int(offset) < 2**64 or int(offset) % 4:
        raise ValueError(f"offset must be a non-negative int and a multiple of 4, got {offset!r}")
    return int(seed), int(offset)
