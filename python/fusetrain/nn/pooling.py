"""Pooling layers with PyTorch's arguments and semantics: MaxPool1d/2d, AvgPool1d/2d,
AdaptiveAvgPool1d/2d, and GlobalAvgPool1d/2d (mean over all positions, returning (N, C))."""
from __future__ import annotations

import numpy as np

from .. import ops
from ..ops import _check, prepared
from ..ops.pooling import nonempty_planes
from ..ops.window import window_out_size
from . import inference
from ._inputs import check_floating
from .module import Module


def _check_input(layer, x, dims, channels=True):
    check_floating(layer, x)
    if x.ndim != dims + 2:
        raise ValueError(f"{layer!r}: expected a {dims + 2}-D input {'(N, C, L)' if dims == 1 else '(N, C, H, W)'}, "
                         f"got shape {tuple(x.shape)}")
    nonempty_planes(x.shape, dims, repr(layer), channels)


def _geometry(name, dims, **args):
    """Validates (at construction) each window argument: an int or a sequence of dims ints, with
    its least value; raises naming the layer and the argument."""
    lows = {"kernel_size": 1, "stride": 1, "padding": 0, "dilation": 1}
    try:
        return {arg: _check.ints(v, dims, arg, lows[arg]) for arg, v in args.items()}
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name}: {exc}") from None


def _spatial(v, dims):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * dims


class _Pool(inference.Compiled, Module):
    _dims = 2

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__()
        if ceil_mode:
            raise NotImplementedError(f"{type(self).__name__}: ceil_mode=True is not supported")
        _geometry(type(self).__name__, self._dims, kernel_size=kernel_size, padding=padding,
                  **({} if stride is None else {"stride": stride}))
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.ceil_mode = False

    def _out_shape(self, x, dilation=1):
        sp = [window_out_size(n, k, s, p, d, f"{type(self).__name__} input size {n}")
              for n, k, s, p, d in zip(x.shape[2:], _spatial(self.kernel_size, self._dims),
                                       _spatial(self.stride, self._dims), _spatial(self.padding, self._dims),
                                       _spatial(dilation, self._dims))]
        return tuple(x.shape[:2]) + tuple(sp)


class _MaxPool(_Pool):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        if return_indices:
            raise NotImplementedError(f"{type(self).__name__}: return_indices=True is not supported "
                                      "(use fusetrain.ops.max_pool2d_forward for the indices)")
        g = _geometry(type(self).__name__, self._dims, kernel_size=kernel_size, padding=padding, dilation=dilation)
        for k, p, d in zip(g["kernel_size"], g["padding"], g["dilation"]):
            if 2 * p > d * (k - 1) + 1:
                raise ValueError(f"{type(self).__name__}: padding ({padding!r}) must be at most half of the effective "
                                 f"kernel size ({d * (k - 1) + 1})")
        self.dilation = dilation
        self.return_indices = False

    def _compile_eval(self, b, src, following):
        x = b.value(src)
        _check_input(self, x, self._dims)
        shape = self._out_shape(x, self.dilation)
        return inference.kernel_step(b, src, shape, lambda out: prepared.prepare_max_pool2d(
            x.shape, self.kernel_size, self.stride, self.padding, self.dilation, out=out, dims=self._dims)), 0

    def _forward(self, x):
        _check_input(self, x, self._dims)
        shape = self._out_shape(x, self.dilation)
        fwd = ops.max_pool2d_forward if self._dims == 2 else ops.max_pool1d_forward
        y, idx = fwd(x, self.kernel_size, self.stride, self.padding, self.dilation,
                     out=self._buffer("y", shape, x), indices=self._buffer("idx", shape, x, np.int32))
        self._cache = (tuple(x.shape), idx, x.dtype)
        return y

    def backward(self, grad_output):
        x_shape, idx, dtype = self._saved()
        bwd = ops.max_pool2d_backward if self._dims == 2 else ops.max_pool1d_backward
        return bwd(grad_output, idx, x_shape, self.kernel_size, self.stride, self.padding, self.dilation,
                   grad_input=self._buffer("gx", x_shape, grad_output))

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}")


class MaxPool1d(_MaxPool):
    """Max over sliding windows of (N, C, L); stride defaults to kernel_size."""

    _dims = 1


class MaxPool2d(_MaxPool):
    """Max over sliding windows of (N, C, H, W); stride defaults to kernel_size."""

    _dims = 2


class _AvgPool(_Pool):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        if divisor_override is not None:
            raise NotImplementedError(f"{type(self).__name__}: divisor_override is not supported")
        g = _geometry(type(self).__name__, self._dims, kernel_size=kernel_size, padding=padding)
        if any(2 * p > k for k, p in zip(g["kernel_size"], g["padding"])):
            raise ValueError(f"{type(self).__name__}: padding ({padding!r}) must be at most half of the kernel size "
                             f"({kernel_size!r})")
        self.count_include_pad = bool(count_include_pad)

    def _compile_eval(self, b, src, following):
        x = b.value(src)
        _check_input(self, x, self._dims)
        shape = self._out_shape(x)
        return inference.kernel_step(b, src, shape, lambda out: prepared.prepare_avg_pool2d(
            x.shape, self.kernel_size, self.stride, self.padding, self.count_include_pad, out=out,
            dims=self._dims)), 0

    def _forward(self, x):
        _check_input(self, x, self._dims)
        shape = self._out_shape(x)
        fwd = ops.avg_pool2d_forward if self._dims == 2 else ops.avg_pool1d_forward
        y = fwd(x, self.kernel_size, self.stride, self.padding, self.count_include_pad,
                out=self._buffer("y", shape, x))
        self._cache = tuple(x.shape)
        return y

    def backward(self, grad_output):
        x_shape = self._saved()
        bwd = ops.avg_pool2d_backward if self._dims == 2 else ops.avg_pool1d_backward
        return bwd(grad_output, x_shape, self.kernel_size, self.stride, self.padding, self.count_include_pad,
                   grad_input=self._buffer("gx", x_shape, grad_output))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool1d(_AvgPool):
    """Mean over sliding windows of (N, C, L); count_include_pad=True as in PyTorch."""

    _dims = 1


class AvgPool2d(_AvgPool):
    """Mean over sliding windows of (N, C, H, W); count_include_pad=True as in PyTorch."""

    _dims = 2


class AdaptiveAvgPool2d(inference.Compiled, Module):
    """Average pooling of (N, C, H, W) to output_size (int or pair; None keeps that size), bins as
    PyTorch's: [floor(i*H/OH), ceil((i+1)*H/OH))."""

    _dims = 2

    def __init__(self, output_size):
        super().__init__()
        sizes = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size,) * self._dims
        valid = [v is None or (_check.is_int(v) and v >= 1) for v in sizes]
        if len(sizes) != self._dims or not all(valid):
            raise ValueError(f"{type(self).__name__}: output_size must be an int >= 1, None or a sequence of "
                             f"{self._dims} of them, got {output_size!r}")
        self.output_size = output_size

    def _size2d(self, x):
        if self._dims == 2:
            return self.output_size
        o = self.output_size[0] if isinstance(self.output_size, (tuple, list)) else self.output_size
        return (1, o)

    def _compile_eval(self, b, src, following):
        x = b.value(src)
        _check_input(self, x, self._dims, channels=False)
        x4 = src if self._dims == 2 else inference.view(b, src, (x.shape[0], x.shape[1], 1, x.shape[2]))
        shape4 = b.value(x4).shape
        oh, ow = ((n if v is None else v) for v, n in zip(_spatial(self._size2d(x), 2), shape4[2:]))
        y = inference.kernel_step(b, x4, shape4[:2] + (oh, ow), lambda out: prepared.prepare_adaptive_avg_pool2d(
            shape4, (oh, ow), out=out))
        return (y if self._dims == 2 else inference.view(b, y, (x.shape[0], x.shape[1], ow))), 0

    def _forward(self, x):
        _check_input(self, x, self._dims, channels=False)
        x4 = x if self._dims == 2 else x.reshape(x.shape[0], x.shape[1], 1, x.shape[2])
        size = self._size2d(x)
        oh, ow = ((n if v is None else v) for v, n in zip(_spatial(size, 2), x4.shape[2:]))
        out = self._buffer("y", x4.shape[:2] + (oh, ow), x)
        y = ops.adaptive_avg_pool2d_forward(x4, (oh, ow), out=out)
        self._cache = tuple(x.shape)
        return y if self._dims == 2 else y.reshape(y.shape[0], y.shape[1], y.shape[3])

    def backward(self, grad_output):
        x_shape = self._saved()
        if self._dims == 1:
            g4 = grad_output.reshape(grad_output.shape[0], grad_output.shape[1], 1, grad_output.shape[-1])
            x4 = (x_shape[0], x_shape[1], 1, x_shape[2])
        else:
            g4, x4 = grad_output, x_shape
        gx = ops.adaptive_avg_pool2d_backward(g4, x4, grad_input=self._buffer("gx", x4, grad_output))
        return gx.reshape(x_shape)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool1d(AdaptiveAvgPool2d):
    """Average pooling of (N, C, L) to output_size bins."""

    _dims = 1


class GlobalAvgPool2d(inference.Compiled, Module):
    """Mean over all spatial positions: (N, C, H, W) -> (N, C), ready for a Linear layer (the
    same as AdaptiveAvgPool2d(1) followed by Flatten)."""

    _dims = 2

    def __init__(self):
        super().__init__()

    def _compile_eval(self, b, src, following):
        x = b.value(src)
        _check_input(self, x, self._dims, channels=False)
        N, Ch = x.shape[:2]
        x4 = inference.view(b, src, (N, Ch, 1, x.shape[2])) if self._dims == 1 else src
        shape4 = b.value(x4).shape
        y = inference.kernel_step(b, x4, (N, Ch, 1, 1), lambda out: prepared.prepare_adaptive_avg_pool2d(
            shape4, (1, 1), out=out))
        return inference.view(b, y, (N, Ch)), 0

    def _forward(self, x):
        _check_input(self, x, self._dims, channels=False)
        N, Ch = x.shape[:2]
        x4 = x.reshape(N, Ch, 1, -1) if self._dims == 1 else x
        y = ops.adaptive_avg_pool2d_forward(x4, (1, 1), out=self._buffer("y", (N, Ch, 1, 1), x))
        self._cache = tuple(x.shape)
        return y.reshape(N, Ch)

    def backward(self, grad_output):
        x_shape = self._saved()
        N, Ch = x_shape[:2]
        if tuple(grad_output.shape) != (N, Ch):
            raise ValueError(f"{self!r}: grad_output must have shape {(N, Ch)}, got {tuple(grad_output.shape)}")
        x4 = (N, Ch, 1, x_shape[2]) if self._dims == 1 else x_shape
        gx = ops.adaptive_avg_pool2d_backward(grad_output.reshape(N, Ch, 1, 1), x4,
                                              grad_input=self._buffer("gx", x4, grad_output))
        return gx.reshape(x_shape)


class GlobalAvgPool1d(GlobalAvgPool2d):
    """Mean over all positions: (N, C, L) -> (N, C)."""

    _dims = 1
