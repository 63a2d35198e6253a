"""Which kernel module serves a call: the NumPy twins, _core (host arrays) or _cuda (CuPy arrays)."""
from __future__ import annotations

from .. import backend


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


def cuda():
    return backend._cuda


def core():
    return backend._core


def ptr(x) -> int:
    """Device pointer of a CuPy array (0 for None)."""
    return 0 if x is None else int(x.data.ptr)


def stream() -> int:
    """The current CuPy stream handle (kernels run on it, ordered with CuPy's own work)."""
    return int(backend.cupy_module().cuda.get_current_stream().ptr)


def empty(like, shape=None, dtype=None):
    """An uninitialised array on like's device (numpy or cupy)."""
    xp = backend.array_module(like)
    return xp.empty(like.shape if shape is None else shape, dtype=like.dtype if dtype is None else dtype)
