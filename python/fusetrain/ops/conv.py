"""Convolution forward/backward on (N, C, L) and (N, C, H, W) arrays; definitions follow
torch.nn.functional.conv1d / conv2d.

On host arrays a convolution of any stride, padding, dilation and group count runs whole in C++
(csrc/cpu/conv.cpp: register tiles reading a zero-padded, stride-phase-split copy of the input,
which the forward saves for the backward; a depthwise kernel when groups == channels), on
fusetrain's thread pool, with no BLAS call. On CuPy arrays it is im2col (CUDA) + one cuBLAS matmul
per group + a layout move with the bias fused; the backward reuses the forward's column matrix.
The NumPy twin is im2col + numpy.matmul."""
from __future__ import annotations

from .. import backend
from . import _check as C
from . import numpy_ref as ref
from ._dispatch import core, kernel, output, use_numpy
from .window import twin_needs_host, window_out_size


def conv_geometry(x_shape, w_shape, stride, padding, dilation, groups):
    N, Cin, H, W = x_shape
    OC, Cg, KH, KW = w_shape
    groups = C.integer(groups, "groups", lo=1)
    if Cin != Cg * groups:
        raise ValueError(
            f"x has {Cin} channels but weight {tuple(w_shape)} with groups={groups} expects "
            f"{Cg * groups} (= weight.shape[1] * groups)")
    if OC % groups:
        raise ValueError(f"out channels ({OC}) must be divisible by groups ({groups})")
    if N and Cin and (H == 0 or W == 0):
        raise ValueError(f"x has shape {tuple(x_shape)}: as in torch, only a batch or channel count may be 0, not "
                         "the height or width")
    OH = window_out_size(H, KH, stride[0], padding[0], dilation[0], "conv height")
    OW = window_out_size(W, KW, stride[1], padding[1], dilation[1], "conv width")
    return N, Cin, H, W, OC, Cg, KH, KW, OH, OW


def _direct(x=None) -> bool:
    """Whether the C++ convolution kernels run (the fused backend on host arrays; x, when given, is
    not a CuPy array). Otherwise: im2col + matmul on CuPy arrays, or the NumPy twin."""
    return not use_numpy() and (x is None or not C.is_cuda_array(x))


def _direct_saved_shape(geom, stride, padding, dilation) -> tuple:
    """(packs, size): the zero-padded, phase-split input the C++ forward saves for its backward."""
    N, Cin, H, W, OC, Cg, KH, KW, OH, OW = geom
    return tuple(core().conv2d_direct_saved_shape(N, Cin, H, W, KH, KW, *stride, *padding, *dilation))


def conv2d_buffer_shapes(x_shape, weight_shape, *, stride=1, padding=0, dilation=1, groups=1, like=None) -> tuple:
    """(col shape, workspace shape or None) of conv2d_forward/backward, to allocate them once.

    col is what the forward saves for the backward: for the C++ kernels the zero-padded input (packs
    of small images side by side: (packs, size)), with no workspace; on the im2col path (CuPy
    arrays, the NumPy twin) the column matrix (C*KH*KW, N*OH*OW) and an (OC, N*OH*OW) workspace.
    like: an array on the device that will run the convolution (e.g. x); None means numpy arrays."""
    stride = C.ints(stride, 2, "stride", 1)
    padding = C.ints(padding, 2, "padding", 0)
    dilation = C.ints(dilation, 2, "dilation", 1)
    geom = conv_geometry(tuple(x_shape), tuple(weight_shape), stride, padding, dilation, groups)
    N, Cin, H, W, OC, Cg, KH, KW, OH, OW = geom
    if _direct(like):
        return _direct_saved_shape(geom, stride, padding, dilation), None
    return (Cin * KH * KW, N * OH * OW), (OC, N * OH * OW)


def conv1d_buffer_shapes(x_shape, weight_shape, *, stride=1, padding=0, dilation=1, groups=1, like=None) -> tuple:
    """conv2d_buffer_shapes for conv1d_forward/backward on (N, C, L) inputs."""
    if len(x_shape) != 3 or len(weight_shape) != 3:
        raise ValueError(f"expected x (N, C, L) and weight (OC, C/groups, K), got {tuple(x_shape)} and "
                         f"{tuple(weight_shape)}")
    s, p, d = (C.ints(v, 1, n, lo)[0] for v, n, lo in ((stride, "stride", 1), (padding, "padding", 0),
                                                      (dilation, "dilation", 1)))
    N, Cin, L = x_shape
    OC, Cg, K = weight_shape
    return conv2d_buffer_shapes((N, Cin, 1, L), (OC, Cg, 1, K), stride=(1, s), padding=(0, p), dilation=(1, d),
                                groups=groups, like=like)


def conv2d_forward(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1, out=None,
                   col=None, workspace=None):
    """Returns (y, col). x (N, C, H, W), weight (OC, C/groups, KH, KW), bias (OC,) or None.

    col is what conv2d_backward needs (shape: conv2d_buffer_shapes): the zero-padded input for the
    C++ kernels, else the column matrix (C*KH*KW, N*OH*OW), which backward overwrites (it doubles
    as the input-gradient scratch); run one backward per forward. out, col and workspace
    ((OC, N*OH*OW) scratch of the im2col path) may be passed to reuse buffers.
    """
    x = C.array(x, "x", ndim=4)
    twin_needs_host(x, "conv2d")
    weight = C.array(weight, "weight", ndim=4)
    C.same_device(x=x, weight=weight, bias=bias, out=out, col=col, workspace=workspace)
    stride = C.ints(stride, 2, "stride", 1)
    padding = C.ints(padding, 2, "padding", 0)
    dilation = C.ints(dilation, 2, "dilation", 1)
    geom = conv_geometry(x.shape, weight.shape, stride, padding, dilation, groups)
    N, Cin, H, W, OC, Cg, KH, KW, OH, OW = geom
    bias = C.optional(bias, "bias", shape=(OC,))
    out = output(out, "out", (N, OC, OH, OW), x)
    if _direct(x):
        col = output(col, "col", _direct_saved_shape(geom, stride, padding, dilation), x)
        core().conv2d_direct_forward(x, weight, bias, out, col, N, Cin, OC, groups, H, W, KH, KW, *stride, *padding,
                                     *dilation)
        return out, col
    col = output(col, "col", (Cin * KH * KW, N * OH * OW), x)
    if use_numpy():
        y, c = ref.conv2d_forward(x, weight, bias, stride=stride, padding=padding, dilation=dilation,
                                  groups=groups)
        out[...] = y
        col[...] = c
        return out, col
    # CuPy arrays: im2col + cuBLAS (cupy.matmul, on the current stream) + layout move with the bias
    G, K, NS = groups, Cg * KH * KW, N * OH * OW
    work = output(workspace, "workspace", (OC, NS), x)
    kernel("im2col2d", x)(x, col, N, Cin, H, W, KH, KW, *stride, *padding, *dilation)
    cp = backend.cupy_module()
    if G == 1:
        cp.matmul(weight.reshape(OC, K), col, out=work)
    else:
        cp.matmul(weight.reshape(G, OC // G, K), col.reshape(G, K, NS), out=work.reshape(G, OC // G, NS))
    kernel("cn_to_nc", x)(work, bias, out, N, OC, OH * OW)
    return out, col


def conv2d_backward(grad_out, col, weight, x_shape, *, stride=1, padding=0, dilation=1, groups=1,
                    grad_input=None, grad_weight=None, grad_bias=None, need_input_grad=True,
                    workspace=None):
    """Returns grad_input (N, C, H, W), or None when need_input_grad is False.

    grad_weight (OC, C/groups, KH, KW) and grad_bias (OC,) are accumulated (+=) when given.
    col is the forward's column matrix; it is overwritten here.
    """
    weight = C.array(weight, "weight", ndim=4)
    grad_out = C.array(grad_out, "grad_out", ndim=4)
    twin_needs_host(grad_out, "conv2d")
    C.same_device(grad_out=grad_out, col=col, weight=weight, grad_input=grad_input, grad_weight=grad_weight,
                  grad_bias=grad_bias, workspace=workspace)
    stride = C.ints(stride, 2, "stride", 1)
    padding = C.ints(padding, 2, "padding", 0)
    dilation = C.ints(dilation, 2, "dilation", 1)
    if len(x_shape) != 4:
        raise ValueError(f"x_shape must be (N, C, H, W), got {tuple(x_shape)}")
    geom = conv_geometry(tuple(x_shape), weight.shape, stride, padding, dilation, groups)
    N, Cin, H, W, OC, Cg, KH, KW, OH, OW = geom
    if tuple(grad_out.shape) != (N, OC, OH, OW):
        raise ValueError(f"grad_out must have shape {(N, OC, OH, OW)}, got {tuple(grad_out.shape)}")
    G, K, NS = groups, Cg * KH * KW, N * OH * OW
    direct = _direct(grad_out)
    col_shape = _direct_saved_shape(geom, stride, padding, dilation) if direct else (Cin * KH * KW, NS)
    col = C.array(col, "col", inplace=not direct, shape=col_shape)
    grad_weight = C.optional(grad_weight, "grad_weight", inplace=True, shape=weight.shape)
    grad_bias = C.optional(grad_bias, "grad_bias", inplace=True, shape=(OC,))
    if need_input_grad:
        grad_input = output(grad_input, "grad_input", (N, Cin, H, W), grad_out)
    else:
        grad_input = None
    if direct:
        core().conv2d_direct_backward(grad_out, col, weight, grad_input, grad_weight, grad_bias, N, Cin, OC, groups,
                                      H, W, KH, KW, *stride, *padding, *dilation)
        return grad_input
    if use_numpy():
        dx, dw, db = ref.conv2d_backward(grad_out, col, weight, (N, Cin, H, W), stride=stride,
                                         padding=padding, dilation=dilation, groups=groups,
                                         need_input_grad=need_input_grad)
        if grad_weight is not None:
            grad_weight += dw
        if grad_bias is not None:
            grad_bias += db
        if need_input_grad:
            grad_input[...] = dx
        return grad_input
    # CuPy arrays: layout move of dy (with the bias sums), cuBLAS for both products, col2im
    work = output(workspace, "workspace", (OC, NS), grad_out)
    kernel("nc_to_cn", grad_out)(grad_out, work, grad_bias, N, OC, OH * OW)
    cp = backend.cupy_module()
    dyg = work.reshape(G, OC // G, NS)
    colg = col.reshape(G, K, NS)
    if grad_weight is not None:
        gw = grad_weight.reshape(G, OC // G, K)
        gw += cp.matmul(colg, dyg.transpose(0, 2, 1)).transpose(0, 2, 1)
    if need_input_grad:
        cp.matmul(weight.reshape(G, OC // G, K).transpose(0, 2, 1), dyg, out=colg)
        kernel("col2im2d", grad_out)(col, grad_input, N, Cin, H, W, KH, KW, *stride, *padding, *dilation)
    return grad_input


def _as2d(arr, name):
    """(N, C, L) -> (N, C, 1, L) view (and None stays None)."""
    if arr is None:
        return None
    arr = C.array(arr, name, ndim=3)
    return arr.reshape(arr.shape[0], arr.shape[1], 1, arr.shape[2])


def conv1d_forward(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1, out=None,
                   col=None, workspace=None):
    """Returns (y, col) for x (N, C, L), weight (OC, C/groups, K); see conv2d_forward."""
    x4, w4 = _as2d(x, "x"), _as2d(weight, "weight")
    s, p, d = (C.ints(v, 1, n, lo)[0] for v, n, lo in ((stride, "stride", 1), (padding, "padding", 0),
                                                      (dilation, "dilation", 1)))
    if out is not None:
        out = C.array(out, "out", inplace=True, ndim=3)
        out = out.reshape(out.shape[0], out.shape[1], 1, out.shape[2])
    y, col = conv2d_forward(x4, w4, bias, stride=(1, s), padding=(0, p), dilation=(1, d), groups=groups,
                            out=out, col=col, workspace=workspace)
    return y.reshape(y.shape[0], y.shape[1], y.shape[3]), col


def conv1d_backward(grad_out, col, weight, x_shape, *, stride=1, padding=0, dilation=1, groups=1,
                    grad_input=None, grad_weight=None, grad_bias=None, need_input_grad=True,
                    workspace=None):
    """Returns grad_input (N, C, L) or None; grad_weight/grad_bias accumulated; see conv2d_backward."""
    s, p, d = (C.ints(v, 1, n, lo)[0] for v, n, lo in ((stride, "stride", 1), (padding, "padding", 0),
                                                      (dilation, "dilation", 1)))
    if len(x_shape) != 3:
        raise ValueError(f"x_shape must be (N, C, L), got {tuple(x_shape)}")
    N, Cin, L = x_shape
    gw = None if grad_weight is None else _as2d(C.array(grad_weight, "grad_weight", inplace=True, ndim=3),
                                                "grad_weight")
    gi = None if grad_input is None else _as2d(C.array(grad_input, "grad_input", inplace=True, ndim=3),
                                               "grad_input")
    dx = conv2d_backward(_as2d(grad_out, "grad_out"), col, _as2d(weight, "weight"), (N, Cin, 1, L),
                         stride=(1, s), padding=(0, p), dilation=(1, d), groups=groups, grad_input=gi,
                         grad_weight=gw, grad_bias=grad_bias, need_input_grad=need_input_grad,
                         workspace=workspace)
    return None if dx is None else dx.reshape(N, Cin, L)
