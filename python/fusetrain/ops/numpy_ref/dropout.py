"""NumPy twins of Philox4x32-10, the dropout masks (bit for bit the kernels') and the epilogue
y = dropout(act(x + bias))."""
from __future__ import annotations

import math

import numpy as np


_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_LO = np.uint64(0xFFFFFFFF)


def philox4x32_10(counters, key):
    """counters: (n, 4) uint32; key: (k0, k1) ints. Returns (n, 4) uint32 (Random123's philox4x32-10)."""
    c = [counters[:, i].astype(np.uint64) for i in range(4)]
    k0, k1 = int(key[0]) & 0xFFFFFFFF, int(key[1]) & 0xFFFFFFFF
    s32 = np.uint64(32)
    for _ in range(10):
        p0 = _M0 * c[0]
        p1 = _M1 * c[2]
        c = [(p1 >> s32) ^ c[1] ^ np.uint64(k0), p1 & _LO, (p0 >> s32) ^ c[3] ^ np.uint64(k1), p0 & _LO]
        k0 = (k0 + _W0) & 0xFFFFFFFF
        k1 = (k1 + _W1) & 0xFFFFFFFF
    return np.stack([x.astype(np.uint32) for x in c], axis=1)


def dropout_threshold(p):
    return math.ceil(p * 16777216.0)


def dropout_keep(n, p, seed, offset):
    """Boolean keep-mask of n elements, the same bits the kernels draw for (seed, offset)."""
    if n == 0:
        return np.zeros(0, dtype=bool)
    first, last = offset // 4, (offset + n - 1) // 4
    blocks = np.arange(first, last + 1, dtype=np.uint64)
    ctr = np.zeros((blocks.size, 4), dtype=np.uint32)
    ctr[:, 0] = (blocks & _LO).astype(np.uint32)
    ctr[:, 1] = (blocks >> np.uint64(32)).astype(np.uint32)
    words = philox4x32_10(ctr, (seed & 0xFFFFFFFF, seed >> 32)).ravel()
    start = offset - first * 4
    words = words[start:start + n]
    return (words >> np.uint32(8)) >= np.uint32(dropout_threshold(p))


_ACTS = ("identity", "relu", "leaky_relu", "tanh", "sigmoid")


def activation(z, act, slope=0.01):
    if act == "identity":
        return z
    if act == "relu":
        return np.maximum(z, 0)
    if act == "leaky_relu":
        return np.where(z > 0, z, z * slope)
    if act == "tanh":
        return np.tanh(z)
    if act == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    raise ValueError(f"act must be one of {_ACTS}, got {act!r}")


def activation_grad_from_output(a, act, slope=0.01):
    """d act / d z written in terms of a = act(z)."""
    if act == "identity":
        return np.ones_like(a)
    if act == "relu":
        return (~(a <= 0)).astype(a.dtype)
    if act == "leaky_relu":
        return np.where(a > 0, 1.0, slope).astype(a.dtype)
    if act == "tanh":
        return 1.0 - a * a
    if act == "sigmoid":
        return a * (1.0 - a)
    raise ValueError(f"act must be one of {_ACTS}, got {act!r}")


def bias_act_dropout_forward(x, bias, *, act, slope, p, seed, offset):
    z = x + bias if bias is not None else x
    a = activation(z, act, slope)
    if p > 0:
        keep = dropout_keep(x.size, p, seed, offset).reshape(x.shape)
        a = np.where(keep, a * (1.0 / (1.0 - p)), 0)
    return a.astype(x.dtype, copy=False)


def bias_act_dropout_backward(dy, y, *, act, slope, p, seed, offset):
    """Returns (dx, dbias): dbias is the column sum of dx over all leading axes."""
    if p > 0:
        keep = dropout_keep(y.size, p, seed, offset).reshape(y.shape)
        scale = 1.0 / (1.0 - p)
        a = np.where(keep, y / scale, 0)
        dx = np.where(keep, dy * scale * activation_grad_from_output(a, act, slope), 0)
    else:
        dx = dy * activation_grad_from_output(y, act, slope)
    dx = dx.astype(dy.dtype, copy=False)
    dbias = dx.reshape(int(np.prod(dx.shape[:-1])), dx.shape[-1]).sum(axis=0) if dx.ndim else dx
    return dx, dbias
