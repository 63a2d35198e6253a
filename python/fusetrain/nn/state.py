"""A module's state as a whole: moved between devices and dtypes (Module.to), and saved to and
loaded from a state_dict with PyTorch's keys."""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from .. import backend
from . import inference
from .arena import Arena
from .parameter import Parameter, _as_array

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def move(module, device=None, dtype=None):
    """Module.to: parameters and buffers moved to ``"cpu"`` or ``"cuda"`` and/or floating ones cast
    to ``dtype``; parameters re-packed into one arena."""
    if device is not None:
        device = str(device)
        if device.startswith("cuda"):
            if not backend.cuda_available():
                raise RuntimeError("to('cuda') needs fusetrain's CUDA module, CuPy and a visible GPU; "
                                   "fusetrain.cuda_available() is False")
            device = "cuda"
        elif device != "cpu":
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    params = list(module.parameters())
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"dtype must be a floating type, got {dtype.name}")
        for p in params:
            if p.dtype != dtype:
                data = p.data.astype(dtype)
                p._bind(data, backend.array_module(data).zeros_like(data))
    if params:
        Arena(params, device=device)
    for m in module.modules():
        for name, v in list(m.__dict__.items()):  # unregistered Parameters (e.g. weight_norm's weight)
            if isinstance(v, Parameter):
                data = v.data.astype(dtype) if dtype is not None else v.data
                if device == "cuda" and not backend.is_cuda_array(data):
                    data = backend.cupy_module().asarray(data)
                elif device == "cpu" and backend.is_cuda_array(data):
                    data = data.get()
                v._bind(data, backend.array_module(data).zeros_like(data))
        for name, b in list(m._buffers.items()):
            if b is None:
                continue
            if dtype is not None and b.dtype.kind == "f":
                b = b.astype(dtype)
            if device == "cuda" and not backend.is_cuda_array(b):
                b = backend.cupy_module().asarray(b)
            elif device == "cpu" and backend.is_cuda_array(b):
                b = b.get()
            m._buffers[name] = b
        m._scratch.clear()
        m._drop_caches()
    inference.bump()
    return module


def state_dict(module, prefix: str = "") -> dict:
    """Copies of every parameter and persistent buffer as NumPy arrays, under PyTorch's keys
    (own parameters, own buffers, then each child under ``"<child name>."``)."""
    return {prefix + key: _host_copy(m._parameters[name].data if kind == "param" else m._buffers[name])
            for key, (m, name, kind) in _state_targets(module).items()}


def _state_targets(module):
    """key -> (owner module, attribute name, kind) for everything state_dict saves, under the same
    keys: a module reachable by several paths (one layer used at several places) under each."""
    targets = {}
    _targets_of(module, "", targets)
    return targets


def _targets_of(module, prefix, targets):
    for name, p in module._parameters.items():
        if p is not None:
            targets.setdefault(prefix + name, (module, name, "param"))
    for name, b in module._buffers.items():
        if b is not None and name not in module._non_persistent:
            targets.setdefault(prefix + name, (module, name, "buffer"))
    for name, m in module._modules.items():
        if m is not None:
            _targets_of(m, prefix + name + ".", targets)


def load_state_dict(module, state_dict, strict: bool = True):
    """Copy values from ``state_dict`` (NumPy arrays, or torch tensors) into this module's
    parameters and buffers in place. Raises RuntimeError listing missing/unexpected keys
    (when strict) and shape mismatches; returns (missing_keys, unexpected_keys)."""
    if not hasattr(state_dict, "items"):
        raise TypeError(f"state_dict must be a mapping of names to arrays, got {type(state_dict).__name__}")
    targets = _state_targets(module)
    missing = [k for k in targets if k not in state_dict]
    unexpected = [k for k in state_dict if k not in targets]
    mismatched = []
    for key, (m, name, kind) in targets.items():
        if key not in state_dict:
            continue
        cur = m._parameters[name].data if kind == "param" else m._buffers[name]
        shape = tuple(getattr(state_dict[key], "shape", np.shape(state_dict[key])))
        if shape != tuple(cur.shape):
            mismatched.append(f"{key}: expected shape {tuple(cur.shape)}, got {shape}")
    problems = []
    if strict and missing:
        problems.append("missing keys: " + ", ".join(missing))
    if strict and unexpected:
        problems.append("unexpected keys: " + ", ".join(map(str, unexpected)))
    if mismatched:
        problems.append("shape mismatches: " + "; ".join(mismatched))
    if problems:
        raise RuntimeError(f"error(s) loading state_dict into {type(module).__name__}: " + " | ".join(problems))
    for key, (m, name, kind) in targets.items():
        if key not in state_dict:
            continue
        if kind == "param":
            m._parameters[name].data = state_dict[key]
        else:
            cur = m._buffers[name]
            cur[...] = _as_array(state_dict[key], cur.dtype, like=cur)
    return IncompatibleKeys(missing, unexpected)


def _host_copy(a):
    if backend.is_cuda_array(a):
        return a.get()
    return np.array(a, copy=True)
