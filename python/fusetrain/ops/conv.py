"""Convolution and pooling ops on (N, C, L) and (N, C, H, W) arrays; definitions follow
torch.nn.functional.

On host arrays a convolution of any stride, padding, dilation and group count runs whole in C++
(csrc/cpu/conv2d.cpp: register tiles reading a zero-padded, stride-phase-split copy of the input,
which the forward saves for the backward; a depthwise kernel when groups == channels), on
fusetrain's thread pool, with no BLAS call. On CuPy arrays it is im2col (CUDA) + one cuBLAS matmul
per group + a layout move with the bias fused; the backward reuses the forward's column matrix.
The NumPy twin is im2col + numpy.matmul. Pooling runs whole in C++ or CUDA."""
from __future__ import annotations

import numpy as np

from .. import backend
from . import _check as C
from . import numpy_ref as ref
from ._dispatch import core, cuda, empty, on_cuda, ptr, stream, use_numpy


def _ints(v, n: int, name: str, lo: int) -> tuple:
    """An int or a sequence of n ints, each >= lo, as a tuple of n Python ints."""
    vals = tuple(v) if isinstance(v, (tuple, list)) else (v,) * n
    if len(vals) != n or any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) for a in vals):
        raise TypeError(f"{name} must be an int or a sequence of {n} ints, got {v!r}")
    if any(a < lo for a in vals):
        raise ValueError(f"{name} must be >= {lo}, got {v!r}")
    return tuple(int(a) for a in vals)


def window_out_size(size, k, s, p, d, what="window"):
    """PyTorch's output length of a sliding window (convolution or pooling) over ``size`` inputs;
    raises ValueError naming ``what`` when the (dilated) kernel does not fit the padded input."""
    o = ref.window_out(size, k, s, p, d)
    if o < 1:
        raise ValueError(
            f"{what}: the kernel (size {k}, dilation {d}) does not fit the input of length {size} "
            f"with padding {p} (output length would be {o})")
    return o


def _twin_needs_host(x, name):
    # The NumPy twins build their intermediates with numpy functions, so they cannot run on cupy arrays.
    if use_numpy() and C.is_cuda_array(x):
        raise NotImplementedError(f"{name}: the NumPy twins of convolution and pooling run on numpy arrays only "
                                  "(got a cupy array); use numpy arrays or the fused backend")


def _buffer(buf, name, shape, like, dtype=None):
    """A caller-provided output/scratch array of exactly this shape, or a fresh one."""
    if buf is None:
        return empty(like, shape, dtype)
    return C.array(buf, name, inplace=True, shape=shape, dtype=dtype or np.float32)


# ---------------------------------------------------------------- convolution


def _conv_geometry(x_shape, w_shape, stride, padding, dilation, groups):
    N, Cin, H, W = x_shape
    OC, Cg, KH, KW = w_shape
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
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
    stride = _ints(stride, 2, "stride", 1)
    padding = _ints(padding, 2, "padding", 0)
    dilation = _ints(dilation, 2, "dilation", 1)
    geom = _conv_geometry(tuple(x_shape), tuple(weight_shape), stride, padding, dilation, groups)
    N, Cin, H, W, OC, Cg, KH, KW, OH, OW = geom
    if _direct(like):
        return _direct_saved_shape(geom, stride, padding, dilation), None
    return (Cin * KH * KW, N * OH * OW), (OC, N * OH * OW)


def conv1d_buffer_shapes(x_shape, weight_shape, *, stride=1, padding=0, dilation=1, groups=1, like=None) -> tuple:
    """conv2d_buffer_shapes for conv1d_forward/backward on (N, C, L) inputs."""
    if len(x_shape) != 3 or len(weight_shape) != 3:
        raise ValueError(f"expected x (N, C, L) and weight (OC, C/groups, K), got {tuple(x_shape)} and "
                         f"{tuple(weight_shape)}")
    s, p, d = (_ints(v, 1, n, lo)[0] for v, n, lo in ((stride, "stride", 1), (padding, "padding", 0),
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
    _twin_needs_host(x, "conv2d")
    weight = C.array(weight, "weight", ndim=4)
    C.same_device(x=x, weight=weight, bias=bias, out=out, col=col, workspace=workspace)
    stride = _ints(stride, 2, "stride", 1)
    padding = _ints(padding, 2, "padding", 0)
    dilation = _ints(dilation, 2, "dilation", 1)
    geom = _conv_geometry(x.shape, weight.shape, stride, padding, dilation, groups)
    N, Cin, H, W, OC, Cg, KH, KW, OH, OW = geom
    bias = C.optional(bias, "bias", shape=(OC,))
    out = _buffer(out, "out", (N, OC, OH, OW), x)
    if _direct(x):
        col = _buffer(col, "col", _direct_saved_shape(geom, stride, padding, dilation), x)
        core().conv2d_direct_forward(x, weight, bias, out, col, N, Cin, OC, groups, H, W, KH, KW, *stride, *padding,
                                     *dilation)
        return out, col
    col = _buffer(col, "col", (Cin * KH * KW, N * OH * OW), x)
    if use_numpy():
        y, c = ref.conv2d_forward(x, weight, bias, stride=stride, padding=padding, dilation=dilation,
                                  groups=groups)
        out[...] = y
        col[...] = c
        return out, col
    # CuPy arrays: im2col + cuBLAS (cupy.matmul, on the current stream) + layout move with the bias
    on_cuda(x)
    G, K, NS = groups, Cg * KH * KW, N * OH * OW
    work = _buffer(workspace, "workspace", (OC, NS), x)
    cuda().im2col2d(ptr(x), ptr(col), N, Cin, H, W, KH, KW, *stride, *padding, *dilation, stream())
    cp = backend.cupy_module()
    if G == 1:
        cp.matmul(weight.reshape(OC, K), col, out=work)
    else:
        cp.matmul(weight.reshape(G, OC // G, K), col.reshape(G, K, NS), out=work.reshape(G, OC // G, NS))
    cuda().cn_to_nc(ptr(work), ptr(bias), ptr(out), N, OC, OH * OW, stream())
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
    _twin_needs_host(grad_out, "conv2d")
    C.same_device(grad_out=grad_out, col=col, weight=weight, grad_input=grad_input, grad_weight=grad_weight,
                  grad_bias=grad_bias, workspace=workspace)
    stride = _ints(stride, 2, "stride", 1)
    padding = _ints(padding, 2, "padding", 0)
    dilation = _ints(dilation, 2, "dilation", 1)
    if len(x_shape) != 4:
        raise ValueError(f"x_shape must be (N, C, H, W), got {tuple(x_shape)}")
    geom = _conv_geometry(tuple(x_shape), weight.shape, stride, padding, dilation, groups)
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
        grad_input = _buffer(grad_input, "grad_input", (N, Cin, H, W), grad_out)
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
    on_cuda(grad_out)
    work = _buffer(workspace, "workspace", (OC, NS), grad_out)
    cuda().nc_to_cn(ptr(grad_out), ptr(work), ptr(grad_bias), N, OC, OH * OW, stream())
    cp = backend.cupy_module()
    dyg = work.reshape(G, OC // G, NS)
    colg = col.reshape(G, K, NS)
    if grad_weight is not None:
        gw = grad_weight.reshape(G, OC // G, K)
        gw += cp.matmul(colg, dyg.transpose(0, 2, 1)).transpose(0, 2, 1)
    if need_input_grad:
        cp.matmul(weight.reshape(G, OC // G, K).transpose(0, 2, 1), dyg, out=colg)
        cuda().col2im2d(ptr(col), ptr(grad_input), N, Cin, H, W, KH, KW, *stride, *padding, *dilation, stream())
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
    s, p, d = (_ints(v, 1, n, lo)[0] for v, n, lo in ((stride, "stride", 1), (padding, "padding", 0),
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
    s, p, d = (_ints(v, 1, n, lo)[0] for v, n, lo in ((stride, "stride", 1), (padding, "padding", 0),
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


# ---------------------------------------------------------------- pooling


def _nonempty_planes(x_shape, dims, what, channels=True):
    """PyTorch's pooling needs at least one pixel per plane, and one channel unless adaptive;
    only the batch may be empty."""
    spatial = tuple(x_shape[2:])
    if any(n == 0 for n in spatial) or (channels and x_shape[1] == 0):
        which = "channels, height and width" if dims == 2 else "channels and length"
        if not channels:
            which = "height and width" if dims == 2 else "length"
        raise ValueError(f"{what}: the input's {which} must be >= 1 (only the batch may be empty), "
                         f"got shape {tuple(x_shape)}")


def _pool_args(x_shape, dims, kernel_size, stride, padding, dilation, what, max_pool):
    _nonempty_planes(x_shape, dims, what)
    k = _ints(kernel_size, dims, "kernel_size", 1)
    s = k if stride is None else _ints(stride, dims, "stride", 1)
    p = _ints(padding, dims, "padding", 0)
    d = _ints(dilation, dims, "dilation", 1)
    for ki, pi, di in zip(k, p, d):
        eff = di * (ki - 1) + 1 if max_pool else ki
        if 2 * pi > eff:
            raise ValueError(f"{what}: padding ({padding!r}) must be at most half of the effective kernel "
                             f"size ({eff})")
    spatial = tuple(x_shape[2:])
    out = tuple(window_out_size(n, ki, si, pi, di, what) for n, ki, si, pi, di in zip(spatial, k, s, p, d))
    if dims == 1:  # a 1-D op is the 2-D op on (N*C, 1, L) planes
        k, s, p, d, spatial, out = (1, *k), (1, *s), (0, *p), (1, *d), (1, *spatial), (1, *out)
    return k, s, p, d, spatial, out


def _pool_input(x, name, dims):
    x = C.array(x, name, ndim=dims + 2)
    _twin_needs_host(x, "pooling")
    return x


def _max_pool_forward(x, dims, kernel_size, stride, padding, dilation, out, indices):
    x = _pool_input(x, "x", dims)
    C.same_device(x=x, out=out, indices=indices)
    k, s, p, d, (H, W), (OH, OW) = _pool_args(x.shape, dims, kernel_size, stride, padding, dilation,
                                              f"max_pool{dims}d", True)
    oshape = x.shape[:2] + ((OW,) if dims == 1 else (OH, OW))
    out = _buffer(out, "out", oshape, x)
    indices = _buffer(indices, "indices", oshape, x, np.int32)
    P = x.shape[0] * x.shape[1]
    if use_numpy():
        y, idx = ref.max_pool2d_forward(x.reshape(P, H, W), k, s, p, d)
        out.reshape(P, OH, OW)[...] = y
        indices.reshape(P, OH, OW)[...] = idx
    elif on_cuda(x):
        cuda().maxpool2d_forward(ptr(x), ptr(out), ptr(indices), P, H, W, *k, *s, *p, *d, stream())
    else:
        core().maxpool2d_forward(x, out, indices, P, H, W, *k, *s, *p, *d)
    return out, indices


def _max_pool_backward(grad_out, indices, input_shape, dims, kernel_size, stride, padding, dilation,
                       grad_input):
    input_shape = tuple(input_shape)
    if len(input_shape) != dims + 2:
        raise ValueError(f"input_shape must have {dims + 2} dimensions, got {input_shape}")
    k, s, p, d, (H, W), (OH, OW) = _pool_args(input_shape, dims, kernel_size, stride, padding, dilation,
                                              f"max_pool{dims}d", True)
    oshape = input_shape[:2] + ((OW,) if dims == 1 else (OH, OW))
    grad_out = C.array(grad_out, "grad_out", shape=oshape)
    _twin_needs_host(grad_out, "pooling")
    C.same_device(grad_out=grad_out, indices=indices, grad_input=grad_input)
    indices = C.array(indices, "indices", dtype=np.int32, shape=oshape)
    grad_input = _buffer(grad_input, "grad_input", input_shape, grad_out)
    P = input_shape[0] * input_shape[1]
    if use_numpy() or C.is_cuda_array(indices):
        # The C++ kernel checks its indices itself (in parallel, before writing anything).
        bad = (indices < -1) | (indices >= H * W)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad.get() if C.is_cuda_array(bad) else bad)[0])
            raise ValueError(f"indices: entry {first} is {int(indices[first])}, outside the input plane of {H * W} "
                             f"pixels (expected -1 <= index < {H * W}, -1 for a window wholly in the padding)")
    if use_numpy():
        grad_input.reshape(P, H, W)[...] = ref.max_pool2d_backward(grad_out.reshape(P, OH, OW),
                                                                   indices.reshape(P, OH, OW), (H, W))
    elif on_cuda(grad_out):
        cuda().maxpool2d_backward(ptr(grad_out), ptr(indices), ptr(grad_input), P, H, W, *k, *s, *p, *d, stream())
    else:
        core().maxpool2d_backward(grad_out, indices, grad_input, P, H, W, *k, *s, *p, *d)
    return grad_input


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1, *, out=None, indices=None):
    """Returns (y, indices) for x (N, C, H, W); indices (int32) are flat positions ih*W + iw in
    each input plane, as torch's return_indices gives. stride defaults to kernel_size. A window
    wholly in the padding (possible with dilation) gives -inf and index -1 (torch: -inf and an
    index outside the plane)."""
    return _max_pool_forward(x, 2, kernel_size, stride, padding, dilation, out, indices)


def max_pool2d_backward(grad_out, indices, input_shape, kernel_size, stride=None, padding=0, dilation=1, *,
                        grad_input=None):
    """Returns grad_input (N, C, H, W): grad_out routed to the forward's argmax positions; an index
    of -1 (a window wholly in the padding) routes its gradient nowhere. Any other index outside
    the plane raises ValueError before anything is written."""
    return _max_pool_backward(grad_out, indices, input_shape, 2, kernel_size, stride, padding, dilation,
                              grad_input)


def max_pool1d_forward(x, kernel_size, stride=None, padding=0, dilation=1, *, out=None, indices=None):
    """Returns (y, indices) for x (N, C, L); indices are positions along L."""
    return _max_pool_forward(x, 1, kernel_size, stride, padding, dilation, out, indices)


def max_pool1d_backward(grad_out, indices, input_shape, kernel_size, stride=None, padding=0, dilation=1, *,
                        grad_input=None):
    return _max_pool_backward(grad_out, indices, input_shape, 1, kernel_size, stride, padding, dilation,
                              grad_input)


def _avg_pool_forward(x, dims, kernel_size, stride, padding, count_include_pad, out):
    x = _pool_input(x, "x", dims)
    C.same_device(x=x, out=out)
    k, s, p, _, (H, W), (OH, OW) = _pool_args(x.shape, dims, kernel_size, stride, padding, 1,
                                              f"avg_pool{dims}d", False)
    out = _buffer(out, "out", x.shape[:2] + ((OW,) if dims == 1 else (OH, OW)), x)
    P = x.shape[0] * x.shape[1]
    if use_numpy():
        out.reshape(P, OH, OW)[...] = ref.avg_pool2d_forward(x.reshape(P, H, W), k, s, p, bool(count_include_pad))
    elif on_cuda(x):
        cuda().avgpool2d_forward(ptr(x), ptr(out), P, H, W, *k, *s, *p, bool(count_include_pad), stream())
    else:
        core().avgpool2d_forward(x, out, P, H, W, *k, *s, *p, bool(count_include_pad))
    return out


def _avg_pool_backward(grad_out, input_shape, dims, kernel_size, stride, padding, count_include_pad,
                       grad_input):
    input_shape = tuple(input_shape)
    if len(input_shape) != dims + 2:
        raise ValueError(f"input_shape must have {dims + 2} dimensions, got {input_shape}")
    k, s, p, _, (H, W), (OH, OW) = _pool_args(input_shape, dims, kernel_size, stride, padding, 1,
                                              f"avg_pool{dims}d", False)
    grad_out = C.array(grad_out, "grad_out", shape=input_shape[:2] + ((OW,) if dims == 1 else (OH, OW)))
    _twin_needs_host(grad_out, "pooling")
    C.same_device(grad_out=grad_out, grad_input=grad_input)
    grad_input = _buffer(grad_input, "grad_input", input_shape, grad_out)
    P = input_shape[0] * input_shape[1]
    if use_numpy():
        grad_input.reshape(P, H, W)[...] = ref.avg_pool2d_backward(grad_out.reshape(P, OH, OW), (H, W), k, s, p,
                                                                   bool(count_include_pad))
    elif on_cuda(grad_out):
        cuda().avgpool2d_backward(ptr(grad_out), ptr(grad_input), P, H, W, *k, *s, *p, bool(count_include_pad),
                                  stream())
    else:
        core().avgpool2d_backward(grad_out, grad_input, P, H, W, *k, *s, *p, bool(count_include_pad))
    return grad_input


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, count_include_pad=True, *, out=None):
    """Average over each window of x (N, C, H, W); count_include_pad as torch (default True)."""
    return _avg_pool_forward(x, 2, kernel_size, stride, padding, count_include_pad, out)


def avg_pool2d_backward(grad_out, input_shape, kernel_size, stride=None, padding=0, count_include_pad=True, *,
                        grad_input=None):
    return _avg_pool_backward(grad_out, input_shape, 2, kernel_size, stride, padding, count_include_pad,
                              grad_input)


def avg_pool1d_forward(x, kernel_size, stride=None, padding=0, count_include_pad=True, *, out=None):
    """Average over each window of x (N, C, L)."""
    return _avg_pool_forward(x, 1, kernel_size, stride, padding, count_include_pad, out)


def avg_pool1d_backward(grad_out, input_shape, kernel_size, stride=None, padding=0, count_include_pad=True, *,
                        grad_input=None):
    return _avg_pool_backward(grad_out, input_shape, 1, kernel_size, stride, padding, count_include_pad,
                              grad_input)


def _adaptive_size(output_size, dims, in_spatial):
    vals = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size,) * dims
    if len(vals) != dims:
        raise TypeError(f"output_size must be an int or a sequence of {dims}, got {output_size!r}")
    # None keeps that input dimension, as in torch.
    vals = tuple(n if v is None else v for v, n in zip(vals, in_spatial))
    return _ints(vals, dims, "output_size", 1)


def adaptive_avg_pool2d_forward(x, output_size, *, out=None):
    """Adaptive average pooling of x (N, C, H, W) to output_size (int, pair, None keeps a size)."""
    x = _pool_input(x, "x", 2)
    _nonempty_planes(x.shape, 2, "adaptive_avg_pool2d", channels=False)
    C.same_device(x=x, out=out)
    N, Ch, H, W = x.shape
    OH, OW = _adaptive_size(output_size, 2, (H, W))
    out = _buffer(out, "out", (N, Ch, OH, OW), x)
    if use_numpy():
        out.reshape(N * Ch, OH, OW)[...] = ref.adaptive_avg_pool2d_forward(x.reshape(N * Ch, H, W), (OH, OW))
    elif on_cuda(x):
        cuda().adaptive_avgpool2d_forward(ptr(x), ptr(out), N * Ch, H, W, OH, OW, stream())
    else:
        core().adaptive_avgpool2d_forward(x, out, N * Ch, H, W, OH, OW)
    return out


def adaptive_avg_pool2d_backward(grad_out, input_shape, *, grad_input=None):
    """grad_input (N, C, H, W) of adaptive_avg_pool2d_forward; the output size is grad_out's."""
    grad_out = _pool_input(grad_out, "grad_out", 2)
    C.same_device(grad_out=grad_out, grad_input=grad_input)
    input_shape = tuple(input_shape)
    if len(input_shape) != 4 or input_shape[:2] != tuple(grad_out.shape[:2]):
        raise ValueError(f"input_shape must be (N, C, H, W) with N, C = {tuple(grad_out.shape[:2])}, "
                         f"got {input_shape}")
    _nonempty_planes(input_shape, 2, "adaptive_avg_pool2d", channels=False)
    N, Ch, H, W = input_shape
    OH, OW = grad_out.shape[2:]
    grad_input = _buffer(grad_input, "grad_input", input_shape, grad_out)
    if use_numpy():
        grad_input.reshape(N * Ch, H, W)[...] = ref.adaptive_avg_pool2d_backward(
            grad_out.reshape(N * Ch, OH, OW), (H, W))
    elif on_cuda(grad_out):
        cuda().adaptive_avgpool2d_backward(ptr(grad_out), ptr(grad_input), N * Ch, H, W, OH, OW, stream())
    else:
        core().adaptive_avgpool2d_backward(grad_out, grad_input, N * Ch, H, W, OH, OW)
    return grad_input
