"""Dropout and the fused epilogue y = dropout(act(x + bias)), forward and backward.

Masks are Philox4x32-10 draws keyed by (seed, offset, element index), see csrc/include/fusetrain/philox.h,
so they are reproducible, thread-count independent and identical on CPU and GPU. Backward needs no
stored mask: it is regenerated, read from an optional 1-bit packed mask, or (after a ReLU) read off
the sign of the output.
"""
from __future__ import annotations

import numpy as np

from . import _check as C
from . import numpy_ref as ref
from ._dispatch import empty, kernel, output, use_numpy

ACTIVATIONS = {"identity": 0, "relu": 1, "leaky_relu": 2, "tanh": 3, "sigmoid": 4}


def _act(act):
    if act not in ACTIVATIONS:
        raise ValueError(f"act must be one of {tuple(ACTIVATIONS)}, got {act!r}")
    return ACTIVATIONS[act]


def mask_bits_size(n: int) -> int:
    """Bytes of a packed keep-mask for n elements (1 bit each)."""
    return (int(n) + 7) // 8


def _bits(mask_bits, n, inplace):
    if mask_bits is None:
        return None
    mask_bits = C.array(mask_bits, "mask_bits", dtype=np.uint8, inplace=inplace)
    if mask_bits.size != mask_bits_size(n):
        raise ValueError(f"mask_bits must hold {mask_bits_size(n)} bytes for {n} elements, got {mask_bits.size}")
    return mask_bits


def dropout_mask(n, p, seed, offset, *, like=None):
    """The boolean keep-mask (n,) that dropout draws for (seed, offset), on like's device (a numpy
    array by default); the same bits on either device. For tests and inspection."""
    p = C.probability(p)
    seed, offset = C.seed_offset(seed, offset)
    n = C.integer(n, "n", lo=0)
    if use_numpy():
        return ref.dropout_keep(n, p, seed, offset)
    keep = empty(np.empty(0) if like is None else like, (n,), np.uint8)
    kernel("dropout_mask", keep)(keep, p, seed, offset)
    return keep.view(bool)


def bias_act_dropout_forward(x, bias=None, *, act="relu", negative_slope=0.01, p=0.0, seed=0, offset=0,
                             out=None, mask_bits=None):
    """y = dropout(act(x + bias)) in one pass. x: (..., F); bias: (F,) or None; ``out`` may be x."""
    x = C.array(x, "x")
    code = _act(act)
    p = C.probability(p)
    seed, offset = C.seed_offset(seed, offset)
    slope = C.number(negative_slope, "negative_slope")
    F = x.shape[-1] if x.ndim else 1
    if bias is not None:
        if x.ndim == 0:
            raise ValueError("x must have at least 1 dimension when a bias is given")
        bias = C.array(bias, "bias", shape=(F,))
    out = output(out, "out", x.shape, x)
    bits = _bits(mask_bits, x.size, inplace=True)
    if bits is not None and C.is_cuda_array(x):
        raise ValueError("mask_bits is supported on the CPU only")
    C.same_device(x=x, bias=bias, out=out)
    N = x.size // F if F else 0
    if use_numpy():
        out[...] = ref.bias_act_dropout_forward(x, bias, act=act, slope=slope, p=p, seed=seed, offset=offset)
        if bits is not None:
            keep = ref.dropout_keep(x.size, p, seed, offset) if p > 0 else np.ones(x.size, bool)
            bits[...] = np.packbits(keep, bitorder="little")
    else:
        kernel("bias_act_dropout_forward", x)(x, bias, out, N, F, code, slope, p, seed, offset, bits)
    return out


def bias_act_dropout_backward(grad_out, out, *, act="relu", negative_slope=0.01, p=0.0, seed=0, offset=0,
                              grad_bias=None, grad_input=None, mask_bits=None):
    """Gradient of bias_act_dropout_forward w.r.t. x (returned) and bias (accumulated into grad_bias).

    ``out`` is the forward output; the same (p, seed, offset) as the forward call must be given.
    With act="leaky_relu" the slope is read off the sign of ``out``, so negative_slope must be
    >= 0 (a negative slope flips that sign; nn.LeakyReLU keeps its input for those).
    """
    out = C.array(out, "out")
    grad_out = C.array(grad_out, "grad_out", shape=out.shape)
    code = _act(act)
    p = C.probability(p)
    seed, offset = C.seed_offset(seed, offset)
    slope = C.number(negative_slope, "negative_slope")
    if act == "leaky_relu" and slope < 0:
        raise ValueError(f"negative_slope must be >= 0 for the leaky_relu backward, got {slope}: it reads the slope "
                         "off the sign of out, which a negative slope flips")
    F = out.shape[-1] if out.ndim else 1
    if grad_bias is not None:
        grad_bias = C.array(grad_bias, "grad_bias", shape=(F,), inplace=True)
    grad_input = output(grad_input, "grad_input", out.shape, out)
    bits = _bits(mask_bits, out.size, inplace=False)
    if bits is not None and C.is_cuda_array(out):
        raise ValueError("mask_bits is supported on the CPU only")
    C.same_device(out=out, grad_out=grad_out, grad_bias=grad_bias, grad_input=grad_input)
    N = out.size // F if F else 0
    if use_numpy():
        dx, db = ref.bias_act_dropout_backward(grad_out, out, act=act, slope=slope, p=p, seed=seed, offset=offset)
        grad_input[...] = dx
        if grad_bias is not None:
            grad_bias += db.astype(grad_bias.dtype)
    else:
        kernel("bias_act_dropout_backward", out)(grad_out, out, grad_input, grad_bias, N, F, code, slope, p, seed,
                                                 offset, bits)
    return grad_input


def dropout_forward(x, p, seed, offset, *, out=None, mask_bits=None):
    """Inverted dropout: keep with probability 1-p and scale by 1/(1-p); p = 0 is the identity."""
    return bias_act_dropout_forward(x, None, act="identity", p=p, seed=seed, offset=offset, out=out,
                                    mask_bits=mask_bits)


def dropout_backward(grad_out, p, seed, offset, *, grad_input=None, mask_bits=None):
    """Gradient of dropout_forward: the same mask (regenerated, or read from mask_bits) times 1/(1-p)."""
    # With the identity activation the output is not needed: act' = 1 wherever the mask keeps.
    return bias_act_dropout_backward(grad_out, grad_out, act="identity", p=p, seed=seed, offset=offset,
                                     grad_input=grad_input, mask_bits=mask_bits)
