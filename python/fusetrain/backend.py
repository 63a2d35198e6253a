"""Which implementation runs each op: the fused C++/CUDA kernels or their NumPy twins.

The switch is global (like torch.backends flags) so a whole model or trainer can be run on the
NumPy twins for comparison: ``fusetrain.backend.set_backend("numpy")`` or ``with use_backend("numpy")``.
"""
from __future__ import annotations

import contextlib

import numpy as _np

try:
    from . import _core  # noqa: F401  (the C++ kernels, always built by `pip install .`)
except ImportError as exc:
    if str(exc).startswith("FUSETRAIN_CPU_ISA"):
        raise  # the environment asks for kernels this CPU cannot run; the message says which
    raise ImportError(
        "fusetrain._core (the compiled CPU kernels) could not be imported. Install the package "
        "with `pip install .` so the C++ extension is built; original error: " + str(exc)
    ) from exc

try:  # the CUDA module exists only when the build found nvcc; failing to import it means no GPU
    from . import _cuda  # type: ignore[attr-defined]
except ImportError:
    _cuda = None

BACKENDS = ("fused", "numpy")
_backend = "fused"


def set_backend(name: str) -> None:
    """Select ``"fused"`` (C++/CUDA kernels, the default) or ``"numpy"`` (the reference twins)."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    _backend = name


def get_backend() -> str:
    return _backend


@contextlib.contextmanager
def use_backend(name: str):
    """Temporarily run every op on ``name`` (``"fused"`` or ``"numpy"``)."""
    previous = _backend
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def cupy_module():
    """The cupy module when it imports, else None."""
    try:
        import cupy  # type: ignore
    except Exception:  # cupy raises various errors when no driver is present
        return None
    return cupy


def cuda_available() -> bool:
    """True when the CUDA module was built, CuPy imports and a GPU is visible."""
    if _cuda is None:
        return False
    cp = cupy_module()
    if cp is None:
        return False
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def is_cuda_array(x) -> bool:
    """True for a CuPy ndarray (checked without importing cupy when it is not loaded)."""
    t = type(x)
    return t is not _np.ndarray and t.__module__.startswith("cupy")


def array_module(x):
    """numpy for host arrays, cupy for device arrays."""
    if is_cuda_array(x):
        return cupy_module()
    return _np
