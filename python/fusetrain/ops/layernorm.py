"""Layer normalization over the trailing ``normalized_ndim`` axes."""
from __future__ import annotations

import math

from . import _check as C
from . import numpy_ref as ref
from ._dispatch import empty, kernel, output, use_numpy


def _rows(x, normalized_ndim):
    if normalized_ndim < 1 or normalized_ndim > x.ndim:
        raise ValueError(f"normalized_ndim must be in [1, {x.ndim}] for an input of shape {tuple(x.shape)}, got {normalized_ndim}")
    D = math.prod(x.shape[x.ndim - normalized_ndim:])
    return x.size // D if D else 0, D


def layernorm_forward(x, weight, bias, *, normalized_ndim=1, eps=1e-5, out=None):
    """Returns (y, mean, rstd); mean/rstd have one value per normalized row."""
    x = C.array(x, "x", min_ndim=1)
    N, D = _rows(x, normalized_ndim)
    norm_shape = x.shape[x.ndim - normalized_ndim:]
    weight = C.optional(weight, "weight", shape=norm_shape)
    bias = C.optional(bias, "bias", shape=norm_shape)
    if (weight is None) != (bias is None):
        raise ValueError("weight and bias must both be given or both be None")
    eps = C.number(eps, "eps", lo=0.0, lo_open=True)
    out = output(out, "out", x.shape, x)
    mean, rstd = empty(x, (N,)), empty(x, (N,))
    C.same_device(x=x, weight=weight, bias=bias, out=out)
    if use_numpy():
        y, m, r = ref.layernorm_forward(x.reshape(N, D), None if weight is None else weight.reshape(D),
                                        None if bias is None else bias.reshape(D), eps)
        out.reshape(N, D)[...] = y
        mean[...] = m
        rstd[...] = r
    else:
        kernel("layernorm_forward", x)(x, weight, bias, out, mean, rstd, N, D, eps)
    return out, mean, rstd


def layernorm_backward(grad_out, x, weight, mean, rstd, *, normalized_ndim=1, grad_input=None,
                       grad_weight=None, grad_bias=None):
    """Returns grad_input; grad_weight/grad_bias are accumulated (+=) when given."""
    x = C.array(x, "x", min_ndim=1)
    N, D = _rows(x, normalized_ndim)
    norm_shape = x.shape[x.ndim - normalized_ndim:]
    grad_out = C.array(grad_out, "grad_out", shape=x.shape)
    weight = C.optional(weight, "weight", shape=norm_shape)
    mean = C.array(mean, "mean", shape=(N,))
    rstd = C.array(rstd, "rstd", shape=(N,))
    grad_weight = C.optional(grad_weight, "grad_weight", shape=norm_shape, inplace=True)
    grad_bias = C.optional(grad_bias, "grad_bias", shape=norm_shape, inplace=True)
    grad_input = output(grad_input, "grad_input", x.shape, x)
    C.same_device(x=x, grad_out=grad_out, weight=weight, mean=mean, rstd=rstd, grad_input=grad_input,
                  grad_weight=grad_weight, grad_bias=grad_bias)
    if use_numpy():
        dx, dw, db = ref.layernorm_backward(grad_out.reshape(N, D), x.reshape(N, D),
                                            None if weight is None else weight.reshape(D), mean, rstd)
        grad_input.reshape(N, D)[...] = dx
        if grad_weight is not None:
            grad_weight += dw.reshape(norm_shape).astype(grad_weight.dtype)
        if grad_bias is not None:
            grad_bias += db.reshape(norm_shape).astype(grad_bias.dtype)
    else:
        kernel("layernorm_backward", x)(grad_out, x, weight, mean, rstd, grad_input, grad_weight, grad_bias, N, D)
    return grad_input
