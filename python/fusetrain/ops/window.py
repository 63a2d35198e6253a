"""Sliding-window geometry shared by the convolution and pooling ops: PyTorch's output size, and
the NumPy twins' restriction to host arrays."""
from __future__ import annotations

from . import _check as C
from . import numpy_ref as ref
from ._dispatch import use_numpy


def window_out_size(size, k, s, p, d, what="window"):
    """PyTorch's output length of a sliding window (convolution or pooling) over ``size`` inputs;
    raises ValueError naming ``what`` when the (dilated) kernel does not fit the padded input."""
    o = ref.window_out(size, k, s, p, d)
    if o < 1:
        raise ValueError(
            f"{what}: the kernel (size {k}, dilation {d}) does not fit the input of length {size} "
            f"with padding {p} (output length would be {o})")
    return o


def twin_needs_host(x, name):
    # The NumPy twins build their intermediates with numpy functions, so they cannot run on cupy arrays.
    if use_numpy() and C.is_cuda_array(x):
        raise NotImplementedError(f"{name}: the NumPy twins of convolution and pooling run on numpy arrays only "
                                  "(got a cupy array); use numpy arrays or the fused backend")
