"""Prepared eval-mode ops: each ``prepare_*`` checks its arguments once and returns a function
``run(x)`` that calls the C++ kernel with nothing left to check, writing into the output it was
given. The compiled inference path (fusetrain.nn.inference) builds a model's plan from these, so a
repeated call costs one kernel call per fused step.

A prepared op keeps references to the arrays it was given (weights, running statistics, outputs)
and reads them when it runs: in-place updates are seen, rebinding the attribute is not (the
inference path recompiles then). Inputs must be float32 host arrays of the prepared shape; a
run(x) with another shape raises ValueError from the kernel's size check.
"""
from __future__ import annotations

import numpy as np

from . import _check as C
from ._dispatch import core
from .conv import conv_geometry
from .dropout import ACTIVATIONS
from .pooling import pool_args


def _act(act, slope):
    if act not in ACTIVATIONS:
        raise ValueError(f"act must be one of {tuple(ACTIVATIONS)}, got {act!r}")
    slope = C.number(slope, "negative_slope")
    if act == "leaky_relu" and slope < 0:
        raise ValueError("a fused leaky_relu needs negative_slope >= 0 (the eval epilogue has no sign to read)")
    return ACTIVATIONS[act], slope


def _bn(bn, channels):
    """The eval-batchnorm arguments from a dict (mean, var, weight, bias, eps) or None."""
    if bn is None:
        return dict(bn_mean=None, bn_var=None, bn_weight=None, bn_bias=None, eps=1e-5)
    args = dict(bn_mean=C.array(bn["mean"], "bn mean", shape=(channels,), inplace=True),
                bn_var=C.array(bn["var"], "bn var", shape=(channels,), inplace=True),
                bn_weight=C.optional(bn.get("weight"), "bn weight", shape=(channels,), inplace=True),
                bn_bias=C.optional(bn.get("bias"), "bn bias", shape=(channels,), inplace=True),
                eps=C.number(bn.get("eps", 1e-5), "eps", lo=0.0, lo_open=True))
    if (args["bn_weight"] is None) != (args["bn_bias"] is None):
        raise ValueError("bn weight and bias must both be given or both be None")
    return args


def _out(out, shape):
    return C.array(out, "out", inplace=True, shape=shape)


def _host(x):
    # The kernels read C-contiguous, aligned memory; only a caller's own input can be anything else.
    return x if x.flags.c_contiguous and x.flags.aligned else np.array(x, order="C")


def prepare_conv2d(x_shape, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1, bn=None,
                   act="identity", negative_slope=0.01, out):
    """y = act(bn(conv2d(x, weight) + bias)) for x of x_shape (N, C, H, W) into out."""
    weight = C.array(weight, "weight", ndim=4, inplace=True)
    stride, padding, dilation = C.ints(stride, 2, "stride", 1), C.ints(padding, 2, "padding", 0), \
        C.ints(dilation, 2, "dilation", 1)
    N, Cin, H, W, OC, Cg, KH, KW, OH, OW = conv_geometry(tuple(x_shape), weight.shape, stride, padding, dilation,
                                                          groups)
    bias = C.optional(bias, "bias", shape=(OC,), inplace=True)
    out = _out(out, (N, OC, OH, OW))
    code, slope = _act(act, negative_slope)
    bnargs = _bn(bn, OC)
    geo = (N, Cin, OC, groups, H, W, KH, KW, *stride, *padding, *dilation)
    k = core()
    pack = k.conv2d_pack_size(N, Cin, H, W, KH, KW, *stride, *padding, *dilation)
    scratch = np.empty(max(1, pack * k.num_threads()), np.float32)  # one pack per thread
    conv = k.conv2d_forward_eval

    def run(x):
        conv(_host(x), weight, out, scratch, *geo, bias, bnargs["bn_mean"], bnargs["bn_var"], bnargs["bn_weight"],
             bnargs["bn_bias"], bnargs["eps"], code, slope)
        return out
    return run


def prepare_linear(x_shape, weight, bias=None, *, bn=None, act="identity", negative_slope=0.01, out):
    """y = act(bn(x @ weight.T + bias)) for x of x_shape (M, in_features) into out (M, out_features)."""
    weight = C.array(weight, "weight", ndim=2, inplace=True)
    M, fin = x_shape
    fout = weight.shape[0]
    if weight.shape[1] != fin:
        raise ValueError(f"x has {fin} features but weight {tuple(weight.shape)} expects {weight.shape[1]}")
    bias = C.optional(bias, "bias", shape=(fout,), inplace=True)
    out = _out(out, (M, fout))
    code, slope = _act(act, negative_slope)
    bnargs = _bn(bn, fout)
    k = core()
    gemm, epi, wT = k.gemm, k.channel_affine_act, weight.T
    need_epilogue = bias is not None or bn is not None or code != 0
    args = (M, fout, 1, bias, bnargs["bn_mean"], bnargs["bn_var"], bnargs["bn_weight"], bnargs["bn_bias"],
            bnargs["eps"], code, slope)

    def run(x):
        gemm(x if x.flags.aligned else np.array(x), wT, out, False)
        if need_epilogue:
            epi(out, out, *args)
        return out
    return run


def prepare_channel_affine(x_shape, *, bias=None, bn=None, act="identity", negative_slope=0.01, out):
    """y = act(bn(x + bias)) per channel (axis 1) for x of x_shape (N, C, ...) into out."""
    N, Ch = x_shape[0], x_shape[1]
    S = int(np.prod(x_shape[2:])) if len(x_shape) > 2 else 1
    bias = C.optional(bias, "bias", shape=(Ch,), inplace=True)
    out = _out(out, tuple(x_shape))
    code, slope = _act(act, negative_slope)
    bnargs = _bn(bn, Ch)
    epi = core().channel_affine_act
    args = (N, Ch, S, bias, bnargs["bn_mean"], bnargs["bn_var"], bnargs["bn_weight"], bnargs["bn_bias"],
            bnargs["eps"], code, slope)

    def run(x):
        epi(_host(x), out, *args)
        return out
    return run


def prepare_activation(x_shape, *, act, negative_slope=0.01, out):
    """y = act(x) element-wise into out."""
    n = int(np.prod(x_shape))
    out = _out(out, tuple(x_shape))
    code, slope = _act(act, negative_slope)
    kernel = core().bias_act_dropout_forward

    def run(x):
        kernel(_host(x), None, out, 1, n, code, slope, 0.0, 0, 0, None)
        return out
    return run


def prepare_add(shape, *, act="identity", negative_slope=0.01, out):
    """y = act(a + b) into out (a residual sum and the activation after it)."""
    out = _out(out, tuple(shape))
    code, slope = _act(act, negative_slope)
    kernel = core().add_act

    def run(a, b):
        kernel(_host(a), _host(b), out, code, slope)
        return out
    return run


def prepare_max_pool2d(x_shape, kernel_size, stride=None, padding=0, dilation=1, *, out, dims=2):
    """Max pooling of x of x_shape ((N, C, L) for dims=1, (N, C, H, W) for 2) into out."""
    k, s, p, d, (H, W), (OH, OW) = pool_args(x_shape, dims, kernel_size, stride, padding, dilation,
                                              f"max_pool{dims}d", True)
    oshape = tuple(x_shape[:2]) + ((OW,) if dims == 1 else (OH, OW))
    out = _out(out, oshape)
    idx = np.empty(oshape, np.int32)  # the kernel writes the argmax too; inference ignores it
    P = x_shape[0] * x_shape[1]
    kernel = core().max_pool2d_forward

    def run(x):
        kernel(_host(x), out, idx, P, H, W, *k, *s, *p, *d)
        return out
    return run


def prepare_avg_pool2d(x_shape, kernel_size, stride=None, padding=0, count_include_pad=True, *, out, dims=2):
    k, s, p, _, (H, W), (OH, OW) = pool_args(x_shape, dims, kernel_size, stride, padding, 1, f"avg_pool{dims}d",
                                              False)
    out = _out(out, tuple(x_shape[:2]) + ((OW,) if dims == 1 else (OH, OW)))
    P = x_shape[0] * x_shape[1]
    kernel, cip = core().avg_pool2d_forward, bool(count_include_pad)

    def run(x):
        kernel(_host(x), out, P, H, W, *k, *s, *p, cip)
        return out
    return run


def prepare_adaptive_avg_pool2d(x_shape, output_size, *, out):
    """Adaptive average pooling of (N, C, H, W) to output_size (OH, OW) into out (N, C, OH, OW)."""
    N, Ch, H, W = x_shape
    OH, OW = output_size
    out = _out(out, (N, Ch, OH, OW))
    kernel = core().adaptive_avg_pool2d_forward

    def run(x):
        kernel(_host(x), out, N * Ch, H, W, OH, OW)
        return out
    return run


def prepare_layernorm(x_shape, weight, bias, *, normalized_ndim, eps, out):
    D = int(np.prod(x_shape[len(x_shape) - normalized_ndim:]))
    N = int(np.prod(x_shape)) // D if D else 0
    out = _out(out, tuple(x_shape))
    mean, rstd = np.empty(N, np.float32), np.empty(N, np.float32)
    kernel, eps = core().layernorm_forward, C.number(eps, "eps", lo=0.0, lo_open=True)

    def run(x):
        kernel(_host(x), weight, bias, out, mean, rstd, N, D, eps)
        return out
    return run


__all__ = ["prepare_activation", "prepare_adaptive_avg_pool2d", "prepare_add", "prepare_avg_pool2d",
           "prepare_channel_affine", "prepare_conv2d", "prepare_layernorm", "prepare_linear", "prepare_max_pool2d"]
