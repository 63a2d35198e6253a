"""Pooling forward/backward on (N, C, L) and (N, C, H, W) arrays -- max, average, adaptive average --
with torch.nn.functional's definitions; each runs whole in C++ (host arrays) or CUDA (CuPy arrays),
the NumPy twins on request. 1-D pooling is the 2-D kernel on (N*C, 1, L) planes."""
from __future__ import annotations

import numpy as np

from . import _check as C
from . import numpy_ref as ref
from ._dispatch import kernel, output, use_numpy
from .window import twin_needs_host, window_out_size


def nonempty_planes(x_shape, dims, what, channels=True):
    """PyTorch's pooling needs at least one pixel per plane, and one channel unless adaptive;
    only the batch may be empty."""
    spatial = tuple(x_shape[2:])
    if any(n == 0 for n in spatial) or (channels and x_shape[1] == 0):
        which = "channels, height and width" if dims == 2 else "channels and length"
        if not channels:
            which = "height and width" if dims == 2 else "length"
        raise ValueError(f"{what}: the input's {which} must be >= 1 (only the batch may be empty), "
                         f"got shape {tuple(x_shape)}")


def pool_args(x_shape, dims, kernel_size, stride, padding, dilation, what, max_pool):
    nonempty_planes(x_shape, dims, what)
    k = C.ints(kernel_size, dims, "kernel_size", 1)
    s = k if stride is None else C.ints(stride, dims, "stride", 1)
    p = C.ints(padding, dims, "padding", 0)
    d = C.ints(dilation, dims, "dilation", 1)
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
    twin_needs_host(x, "pooling")
    return x


def _max_pool_forward(x, dims, kernel_size, stride, padding, dilation, out, indices):
    x = _pool_input(x, "x", dims)
    C.same_device(x=x, out=out, indices=indices)
    k, s, p, d, (H, W), (OH, OW) = pool_args(x.shape, dims, kernel_size, stride, padding, dilation,
                                              f"max_pool{dims}d", True)
    oshape = x.shape[:2] + ((OW,) if dims == 1 else (OH, OW))
    out = output(out, "out", oshape, x)
    indices = output(indices, "indices", oshape, x, np.int32)
    C.no_overlap(out, "out", x=x, indices=indices)
    C.no_overlap(indices, "indices", x=x)
    P = x.shape[0] * x.shape[1]
    if use_numpy():
        y, idx = ref.max_pool2d_forward(x.reshape(P, H, W), k, s, p, d)
        out.reshape(P, OH, OW)[...] = y
        indices.reshape(P, OH, OW)[...] = idx
    else:
        kernel("max_pool2d_forward", x)(x, out, indices, P, H, W, *k, *s, *p, *d)
    return out, indices


def _max_pool_backward(grad_out, indices, input_shape, dims, kernel_size, stride, padding, dilation,
                       grad_input):
    input_shape = tuple(input_shape)
    if len(input_shape) != dims + 2:
        raise ValueError(f"input_shape must have {dims + 2} dimensions, got {input_shape}")
    k, s, p, d, (H, W), (OH, OW) = pool_args(input_shape, dims, kernel_size, stride, padding, dilation,
                                              f"max_pool{dims}d", True)
    oshape = input_shape[:2] + ((OW,) if dims == 1 else (OH, OW))
    grad_out = C.array(grad_out, "grad_out", shape=oshape)
    twin_needs_host(grad_out, "pooling")
    C.same_device(grad_out=grad_out, indices=indices, grad_input=grad_input)
    indices = C.array(indices, "indices", dtype=np.int32, shape=oshape)
    grad_input = output(grad_input, "grad_input", input_shape, grad_out)
    C.no_overlap(grad_input, "grad_input", grad_out=grad_out, indices=indices)
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
    else:
        kernel("max_pool2d_backward", grad_out)(grad_out, indices, grad_input, P, H, W, *k, *s, *p, *d)
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
    k, s, p, _, (H, W), (OH, OW) = pool_args(x.shape, dims, kernel_size, stride, padding, 1,
                                              f"avg_pool{dims}d", False)
    out = output(out, "out", x.shape[:2] + ((OW,) if dims == 1 else (OH, OW)), x)
    C.no_overlap(out, "out", x=x)
    P = x.shape[0] * x.shape[1]
    if use_numpy():
        out.reshape(P, OH, OW)[...] = ref.avg_pool2d_forward(x.reshape(P, H, W), k, s, p, bool(count_include_pad))
    else:
        kernel("avg_pool2d_forward", x)(x, out, P, H, W, *k, *s, *p, bool(count_include_pad))
    return out


def _avg_pool_backward(grad_out, input_shape, dims, kernel_size, stride, padding, count_include_pad,
                       grad_input):
    input_shape = tuple(input_shape)
    if len(input_shape) != dims + 2:
        raise ValueError(f"input_shape must have {dims + 2} dimensions, got {input_shape}")
    k, s, p, _, (H, W), (OH, OW) = pool_args(input_shape, dims, kernel_size, stride, padding, 1,
                                              f"avg_pool{dims}d", False)
    grad_out = C.array(grad_out, "grad_out", shape=input_shape[:2] + ((OW,) if dims == 1 else (OH, OW)))
    twin_needs_host(grad_out, "pooling")
    C.same_device(grad_out=grad_out, grad_input=grad_input)
    grad_input = output(grad_input, "grad_input", input_shape, grad_out)
    C.no_overlap(grad_input, "grad_input", grad_out=grad_out)
    P = input_shape[0] * input_shape[1]
    if use_numpy():
        grad_input.reshape(P, H, W)[...] = ref.avg_pool2d_backward(grad_out.reshape(P, OH, OW), (H, W), k, s, p,
                                                                   bool(count_include_pad))
    else:
        kernel("avg_pool2d_backward", grad_out)(grad_out, grad_input, P, H, W, *k, *s, *p, bool(count_include_pad))
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
    return C.ints(vals, dims, "output_size", 1)


def adaptive_avg_pool2d_forward(x, output_size, *, out=None):
    """Adaptive average pooling of x (N, C, H, W) to output_size (int, pair, None keeps a size)."""
    x = _pool_input(x, "x", 2)
    nonempty_planes(x.shape, 2, "adaptive_avg_pool2d", channels=False)
    C.same_device(x=x, out=out)
    N, Ch, H, W = x.shape
    OH, OW = _adaptive_size(output_size, 2, (H, W))
    out = output(out, "out", (N, Ch, OH, OW), x)
    C.no_overlap(out, "out", x=x)
    if use_numpy():
        out.reshape(N * Ch, OH, OW)[...] = ref.adaptive_avg_pool2d_forward(x.reshape(N * Ch, H, W), (OH, OW))
    else:
        kernel("adaptive_avg_pool2d_forward", x)(x, out, N * Ch, H, W, OH, OW)
    return out


def adaptive_avg_pool2d_backward(grad_out, input_shape, *, grad_input=None):
    """grad_input (N, C, H, W) of adaptive_avg_pool2d_forward; the output size is grad_out's."""
    grad_out = _pool_input(grad_out, "grad_out", 2)
    C.same_device(grad_out=grad_out, grad_input=grad_input)
    input_shape = tuple(input_shape)
    if len(input_shape) != 4 or input_shape[:2] != tuple(grad_out.shape[:2]):
        raise ValueError(f"input_shape must be (N, C, H, W) with N, C = {tuple(grad_out.shape[:2])}, "
                         f"got {input_shape}")
    nonempty_planes(input_shape, 2, "adaptive_avg_pool2d", channels=False)
    N, Ch, H, W = input_shape
    OH, OW = grad_out.shape[2:]
    grad_input = output(grad_input, "grad_input", input_shape, grad_out)
    C.no_overlap(grad_input, "grad_input", grad_out=grad_out)
    if use_numpy():
        grad_input.reshape(N * Ch, H, W)[...] = ref.adaptive_avg_pool2d_backward(
            grad_out.reshape(N * Ch, OH, OW), (H, W))
    else:
        kernel("adaptive_avg_pool2d_backward", grad_out)(grad_out, grad_input, N * Ch, H, W, OH, OW)
    return grad_input
