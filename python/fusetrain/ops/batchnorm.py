"""Batch normalization forward/backward for (N, C), (N, C, L) and (N, C, H, W), optionally fused
with a following ReLU (and a dropout after the ReLU, whose mask then needs no storage: y > 0)."""
from __future__ import annotations

import math

from . import _check as C
from . import numpy_ref as ref
from ._dispatch import empty, kernel, output, use_numpy


def _ncs(x):
    N, Ch = x.shape[0], x.shape[1]
    S = math.prod(x.shape[2:]) if x.ndim > 2 else 1
    return N, Ch, S


def batchnorm_forward(x, weight, bias, running_mean, running_var, *, training, momentum=0.1,
                      eps=1e-5, relu=False, dropout_p=0.0, seed=0, offset=0, out=None):
    """Returns (y, mean, invstd); mean/invstd (C,) are what batchnorm_backward needs.

    training: batch statistics, running stats updated in place (if given) with PyTorch's rule.
    eval: running statistics (required). ``dropout_p > 0`` requires ``relu`` and training.
    """
    x = C.array(x, "x", min_ndim=2)
    N, Ch, S = _ncs(x)
    weight = C.optional(weight, "weight", shape=(Ch,))
    bias = C.optional(bias, "bias", shape=(Ch,))
    if (weight is None) != (bias is None):
        raise ValueError("weight and bias must both be given (affine) or both be None")
    running_mean = C.optional(running_mean, "running_mean", shape=(Ch,), inplace=True)
    running_var = C.optional(running_var, "running_var", shape=(Ch,), inplace=True)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must both be given or both be None")
    eps = C.number(eps, "eps", lo=0.0, lo_open=True)
    momentum = C.number(momentum, "momentum", lo=0.0, hi=1.0)
    dropout_p = C.probability(dropout_p, "dropout_p")
    seed, offset = C.seed_offset(seed, offset)
    if dropout_p > 0 and not (relu and training):
        raise ValueError("a fused dropout after batchnorm needs relu=True and training=True")
    if training and N * S <= 1:
        raise ValueError(f"expected more than 1 value per channel when training, got input shape {tuple(x.shape)}")
    if not training and running_mean is None:
        raise ValueError("eval-mode batchnorm needs running_mean and running_var")
    out = output(out, "out", x.shape, x)
    C.same_device(x=x, weight=weight, bias=bias, running_mean=running_mean, running_var=running_var, out=out)
    mean = empty(x, (Ch,))
    invstd = empty(x, (Ch,))
    if use_numpy():
        keep = ref.dropout_keep(x.size, dropout_p, seed, offset) if dropout_p > 0 else None
        y, m, s = ref.batchnorm_forward(x.reshape(N, Ch, S), weight, bias, running_mean, running_var,
                                        training=training, momentum=momentum, eps=eps, relu=relu,
                                        dropout_keep=keep, dropout_p=dropout_p)
        out.reshape(N, Ch, S)[...] = y
        mean[...] = m
        invstd[...] = s
    elif training:
        kernel("batchnorm_forward_train", x)(x, weight, bias, out, mean, invstd, running_mean, running_var, N, Ch, S,
                                             eps, momentum, bool(relu), dropout_p, seed, offset)
    else:
        mean[...] = running_mean
        kernel("batchnorm_forward_eval", x)(x, weight, bias, running_mean, running_var, out, invstd, N, Ch, S, eps,
                                            bool(relu))
    return out, mean, invstd


def batchnorm_backward(grad_out, x, out, weight, mean, invstd, *, training, relu=False,
                       dropout_p=0.0, grad_input=None, grad_weight=None, grad_bias=None):
    """Returns grad_input; grad_weight / grad_bias (C,) are accumulated (+=) when given.

    ``out`` (the forward output) is needed only when relu (its sign carries the ReLU and the
    fused dropout mask).
    """
    x = C.array(x, "x", min_ndim=2)
    N, Ch, S = _ncs(x)
    grad_out = C.array(grad_out, "grad_out", shape=x.shape)
    out = C.optional(out, "out", shape=x.shape)
    if relu and out is None:
        raise ValueError("out (the forward output) is required when relu=True")
    weight = C.optional(weight, "weight", shape=(Ch,))
    mean = C.array(mean, "mean", shape=(Ch,))
    invstd = C.array(invstd, "invstd", shape=(Ch,))
    grad_weight = C.optional(grad_weight, "grad_weight", shape=(Ch,), inplace=True)
    grad_bias = C.optional(grad_bias, "grad_bias", shape=(Ch,), inplace=True)
    dropout_p = C.probability(dropout_p, "dropout_p")
    scale = 1.0 / (1.0 - dropout_p)
    grad_input = output(grad_input, "grad_input", x.shape, x)
    C.same_device(x=x, grad_out=grad_out, out=out, weight=weight, mean=mean, invstd=invstd,
                  grad_input=grad_input, grad_weight=grad_weight, grad_bias=grad_bias)
    if use_numpy():
        dx, dw, db = ref.batchnorm_backward(grad_out.reshape(N, Ch, S), x.reshape(N, Ch, S),
                                            None if out is None else out.reshape(N, Ch, S), weight, mean,
                                            invstd, training=training, relu=relu, dropout_scale=scale)
        grad_input.reshape(N, Ch, S)[...] = dx
        if grad_weight is not None:
            grad_weight += dw.astype(grad_weight.dtype)
        if grad_bias is not None:
            grad_bias += db.astype(grad_bias.dtype)
    else:
        kernel("batchnorm_backward", x)(grad_out, x, out, weight, mean, invstd, grad_input, grad_weight, grad_bias,
                                        N, Ch, S, bool(relu), scale, bool(training))
    return grad_input
