"""Which implementation serves a call: the NumPy twins (the "numpy" backend), or the compiled
kernel of the arrays' device -- fusetrain._core for numpy arrays, fusetrain._cuda for CuPy arrays.
The two modules have the same functions under the same names and signatures (csrc/bindings), so
an op validates its arguments once and makes one call: ``kernel(name, x)(*args)``."""
from __future__ import annotations

import numpy as np

from .. import backend
from . import _check as C


def use_numpy() -> bool:
    return backend.get_backend() == "numpy"


def on_cuda(x) -> bool:
    """True when x is a CuPy array; raises if it is but the CUDA module is unavailable."""
    if not backend.is_cuda_array(x):
        return False
    if backend._cuda is None:
        raise RuntimeError(
            "got a CuPy array but fusetrain was built without its CUDA module (fusetrain._cuda); "
            "rebuild with nvcc available or use numpy arrays"
        )
    return True


def kernel(name: str, like):
    """The compiled function `name` for arrays on like's device: _cuda's for a CuPy array (it reads
    each array's pointer, size and CuPy's current stream from __cuda_array_interface__, so the
    kernel is ordered with CuPy's own work), else _core's."""
    if type(like) is np.ndarray:
        return getattr(backend._core, name)
    return getattr(backend._cuda if on_cuda(like) else backend._core, name)


def core():
    """The CPU module, for the ops that only it has (direct convolution, GEMM, epilogues, probes)."""
    return backend._core


def empty(like, shape=None, dtype=None):
    """An uninitialised array on like's device (numpy or cupy)."""
    xp = backend.array_module(like)
    return xp.empty(like.shape if shape is None else shape, dtype=like.dtype if dtype is None else dtype)


def output(buf, name, shape, like, dtype=None):
    """A caller's output (or scratch) array `buf`, which must have exactly this shape and be
    writable in place, or a fresh one on like's device when `buf` is None."""
    if buf is None:
        return empty(like, shape, dtype)
    return C.array(buf, name, inplace=True, shape=shape, dtype=dtype or np.float32)
