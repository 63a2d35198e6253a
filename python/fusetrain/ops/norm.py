"""Global gradient norm (deterministic), clip coefficient, scaling, clamping, non-finite checks."""
from __future__ import annotations

import math

import numpy as np

from . import _check as C
from . import numpy_ref as ref
from ._dispatch import kernel, use_numpy

CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_'s guard against division by zero


def _arrays(arrays, name, inplace=False):
    if hasattr(arrays, "dtype"):
        arrays = [arrays]
    out = [C.array(a, f"{name}[{i}]", inplace=inplace) for i, a in enumerate(arrays)]
    C.same_device(**{f"{name}[{i}]": a for i, a in enumerate(out)})
    return out


def _norm_type(norm_type):
    if isinstance(norm_type, str) and norm_type.strip().lower() in ("inf", "+inf", "infinity"):
        norm_type = math.inf  # torch's float(norm_type) reads the string too
    v = C.number(norm_type, "norm_type", lo=0.0, lo_open=True) if not (
        isinstance(norm_type, float) and math.isinf(norm_type)) else float(norm_type)
    if v < 0:
        raise ValueError(f"norm_type must be positive, got {norm_type}")
    return v


def global_norm(arrays, norm_type=2.0) -> float:
    """The norm of all the arrays' values taken together (like torch's clip_grad_norm_ total norm).

    Bitwise deterministic: independent of thread count and identical run to run.
    """
    norm_type = _norm_type(norm_type)
    arrays = _arrays(arrays, "arrays")
    if use_numpy():
        return ref.global_norm(arrays, norm_type)
    sums = [kernel("pow_sum", a)(a, norm_type) for a in arrays]
    if math.isinf(norm_type):
        return float(max(sums, default=0.0))
    total = math.fsum(sums)
    return total ** (1.0 / norm_type)


def clip_coef(total_norm: float, max_norm: float) -> float:
    """min(1, max_norm / (total_norm + 1e-6)): the factor clip-by-global-norm multiplies grads by
    (NaN for a NaN norm, as torch's clamp gives)."""
    coef = float(max_norm) / (float(total_norm) + CLIP_EPS)
    return coef if coef != coef else min(1.0, coef)


def scale_(arrays, factor) -> None:
    """x *= factor for every array, in place."""
    factor = C.number(factor, "factor")
    for a in _arrays(arrays, "arrays", inplace=True):
        if use_numpy():
            a *= a.dtype.type(factor)
        else:
            kernel("scale_inplace", a)(a, factor)


def clamp_(arrays, clip_value) -> None:
    """Clamp every value to [-clip_value, clip_value], in place (clip_grad_value_)."""
    clip_value = C.number(clip_value, "clip_value", lo=0.0)
    for a in _arrays(arrays, "arrays", inplace=True):
        if use_numpy():
            np.clip(a, -clip_value, clip_value, out=a)
        else:
            kernel("clamp_inplace", a)(a, -clip_value, clip_value)


def count_nonfinite(arrays) -> int:
    """How many NaN or Inf values the arrays hold."""
    total = 0
    for a in _arrays(arrays, "arrays"):
        if use_numpy():
            total += int(a.size - np.count_nonzero(np.isfinite(a)))
        else:
            total += int(kernel("count_nonfinite", a)(a))
    return total
