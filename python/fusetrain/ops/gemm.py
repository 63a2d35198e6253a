"""Matrix product out (=|+=) a @ b for 2-D float32 arrays: the C++ GEMM on host arrays (operands
may be strided views such as w.T, read without a copy), cupy.matmul on CuPy arrays, and
numpy.matmul (OpenBLAS) as the NumPy twin."""
from __future__ import annotations

import numpy as np

from .. import backend
from . import _check as C
from ._dispatch import core, empty, use_numpy

_F32 = np.dtype(np.float32)


def _operand(x, name):
    if not (isinstance(x, np.ndarray) or C.is_cuda_array(x)):
        raise TypeError(f"{name} must be a numpy or cupy array, got {C._describe(x)}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got {C._describe(x)}")
    if isinstance(x, np.ndarray) and not x.flags.aligned:
        return np.array(x)  # the kernel loads whole floats; a view at an odd byte offset has none
    return x


def matmul(a, b, out=None, *, accumulate=False):
    """``out = a @ b`` (or ``out += a @ b`` with ``accumulate``), a (M, K), b (K, N), out (M, N).

    ``a`` and ``b`` may be any strided float32 views (transposes included); ``out`` must be
    C-contiguous and must not overlap them. Accumulating writes straight into ``out`` (e.g. a
    parameter's gradient), with no temporary. Returns out."""
    if (type(a) is np.ndarray and type(b) is np.ndarray and type(out) is np.ndarray and not use_numpy()
            and a.dtype == _F32 and b.dtype == _F32 and out.dtype == _F32 and a.ndim == 2 and b.ndim == 2
            and out.ndim == 2 and a.shape[1] == b.shape[0] and out.shape[0] == a.shape[0]
            and out.shape[1] == b.shape[1] and out.flags.c_contiguous and out.flags.writeable
            and a.flags.aligned and b.flags.aligned and out.flags.aligned):
        # the common case, checked in a few attribute reads (a layer's training step calls this often)
        if np.may_share_memory(out, a) or np.may_share_memory(out, b):
            raise ValueError("out must not overlap a or b")
        if out.size:
            core().gemm(a, b, out, bool(accumulate))
        return out
    a, b = _operand(a, "a"), _operand(b, "b")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"a and b cannot be multiplied: a has shape {tuple(a.shape)}, b has shape {tuple(b.shape)}")
    shape = (a.shape[0], b.shape[1])
    if out is None:
        if accumulate:
            raise ValueError("accumulate=True needs out (the array to add the product to)")
        out = empty(a, shape, dtype=np.result_type(a.dtype, b.dtype))
    else:
        out = C.array(out, "out", dtype=out.dtype, inplace=True, shape=shape)
    C.same_device(a=a, b=b, out=out)
    if not use_numpy():
        for name, arr in (("a", a), ("b", b), ("out", out)):
            if arr.dtype != np.float32:
                raise TypeError(f"{name} must have dtype float32, got {C._describe(arr)}")
    if use_numpy() or C.is_cuda_array(out):
        # the NumPy twin (float64 too, for gradient checks) and CuPy's cuBLAS
        if accumulate:
            out += a @ b
        else:
            backend.array_module(out).matmul(a, b, out=out)
        return out
    if np.may_share_memory(out, a) or np.may_share_memory(out, b):
        raise ValueError("out must not overlap a or b")
    if out.size:
        core().gemm(a, b, out, bool(accumulate))
    return out
