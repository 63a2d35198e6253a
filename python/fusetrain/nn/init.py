"""Weight initialization schemes (PyTorch's formulas), resolvable by name or alias with ``get``.

Every function fills its argument in place (a NumPy/CuPy array or a Parameter), draws from
``fusetrain.random.default_generator()`` (so ``fusetrain.manual_seed`` makes it reproducible)
and returns it. Fans follow PyTorch: for a weight (out, in, *kernel), fan_in = in * prod(kernel)
and fan_out = out * prod(kernel).
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from .. import random as frandom
from ..ops import _check
from .parameter import Parameter

__all__ = [
    "calculate_gain", "constant_", "gaussian_", "get", "kaiming_normal_", "kaiming_uniform_",
    "lecun_normal_", "normal_", "ones_", "uniform_", "xavier_normal_", "xavier_uniform_", "zeros_",
]


def _target(a):
    data = a.data if isinstance(a, Parameter) else a
    if not hasattr(data, "shape") or not hasattr(data, "dtype"):
        raise TypeError(f"init functions expect an array or a Parameter, got {type(a).__name__}")
    if np.dtype(data.dtype).kind != "f":
        raise TypeError(f"init functions fill floating-point arrays, got {np.dtype(data.dtype)}")
    return data


def _fill(tensor, values):
    data = _target(tensor)
    if backend.is_cuda_array(data):
        data[...] = backend.cupy_module().asarray(values, dtype=data.dtype)
    else:
        data[...] = values
    return tensor


def _fans(data):
    if data.ndim < 2:
        raise ValueError(f"fan in and fan out cannot be computed for an array with fewer than 2 dimensions "
                         f"(got shape {tuple(data.shape)})")
    receptive = int(np.prod(data.shape[2:])) if data.ndim > 2 else 1
    return data.shape[1] * receptive, data.shape[0] * receptive


def _fan(data, mode):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _fans(data)
    return fan_in if mode == "fan_in" else fan_out


def calculate_gain(nonlinearity: str, param=None) -> float:
    """PyTorch's recommended gain for a nonlinearity (relu: sqrt(2), tanh: 5/3, ...)."""
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid", "identity")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif not _check.is_real(param):
            raise ValueError(f"negative_slope {param!r} is not a valid number")
        else:
            slope = float(param)
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}; expected one of "
                     f"{linear + ('tanh', 'relu', 'leaky_relu', 'selu')}")


def uniform_(tensor, low: float = 0.0, high: float = 1.0):
    """U(low, high)."""
    data = _target(tensor)
    return _fill(tensor, frandom.default_generator().uniform(low, high, size=data.shape))


def normal_(tensor, mean: float = 0.0, std: float = 1.0):
    """N(mean, std**2)."""
    data = _target(tensor)
    if std < 0:
        raise ValueError(f"std must be >= 0, got {std}")
    return _fill(tensor, frandom.default_generator().normal(mean, std, size=data.shape))


def gaussian_(tensor, mode: str = "fan_in"):
    """The lesson's plain Gaussian scheme N(0, std = 1/n), n = fan_in (or fan_out)."""
    data = _target(tensor)
    fan = _fan(data, mode)
    return normal_(tensor, 0.0, 1.0 / fan if fan else 0.0)


def lecun_normal_(tensor):
    """LeCun: N(0, std = 1/sqrt(fan_in)) (plain normal, not truncated)."""
    data = _target(tensor)
    fan_in, _ = _fans(data)
    return normal_(tensor, 0.0, 1.0 / math.sqrt(fan_in) if fan_in else 0.0)


def xavier_uniform_(tensor, gain: float = 1.0):
    """Glorot: U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(_target(tensor))
    std = gain * math.sqrt(2.0 / (fan_in + fan_out)) if fan_in + fan_out else 0.0
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain: float = 1.0):
    """Glorot: N(0, std = gain * sqrt(2 / (fan_in + fan_out)))."""
    fan_in, fan_out = _fans(_target(tensor))
    std = gain * math.sqrt(2.0 / (fan_in + fan_out)) if fan_in + fan_out else 0.0
    return normal_(tensor, 0.0, std)


def kaiming_uniform_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"):
    """He: U(-b, b), b = gain * sqrt(3 / fan), gain = calculate_gain(nonlinearity, a)."""
    fan = _fan(_target(tensor), mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan) if fan else 0.0
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"):
    """He: N(0, std = gain / sqrt(fan)), gain = calculate_gain(nonlinearity, a)."""
    fan = _fan(_target(tensor), mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan) if fan else 0.0
    return normal_(tensor, 0.0, std)


def constant_(tensor, val: float):
    data = _target(tensor)
    data.fill(val)
    return tensor


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


_REGISTRY = {
    "uniform": uniform_,
    "normal": normal_,
    "gaussian": gaussian_,
    "lecun_normal": lecun_normal_,
    "xavier_uniform": xavier_uniform_, "glorot_uniform": xavier_uniform_,
    "xavier_normal": xavier_normal_, "glorot_normal": xavier_normal_,
    "kaiming_uniform": kaiming_uniform_, "he_uniform": kaiming_uniform_,
    "kaiming_normal": kaiming_normal_, "he_normal": kaiming_normal_,
    "zeros": zeros_, "ones": ones_,
}


def get(name):
    """Resolve an initializer by name or alias (case-insensitive; a trailing ``_`` is ignored),
    or return a callable unchanged. Unknown names raise ValueError listing the valid ones."""
    if callable(name):
        return name
    if not isinstance(name, str):
        raise TypeError(f"init must be a name or a callable, got {type(name).__name__}")
    key = name.lower().rstrip("_")
    if key not in _REGISTRY:
        raise ValueError(f"unknown init {name!r}; valid names: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]
