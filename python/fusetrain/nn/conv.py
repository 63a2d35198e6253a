"""Conv1d and Conv2d with PyTorch's arguments, weight shapes, init and state_dict keys, on
fusetrain.ops.conv2d_forward / conv1d_forward (the CPU's direct convolution; im2col + cuBLAS on
CuPy arrays) with reused buffers, and a compile rule for the eval-mode inference path."""
from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..ops import prepared
from ..ops import _check
from ..ops.window import window_out_size
from . import inference
from . import init as _init
from ._inputs import check_array, check_dtype
from .module import Module
from .parameter import Parameter


class _ConvNd(inference.Compiled, Module):
    _dims = 2
    _shape_doc = ""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", dtype=None):
        super().__init__()
        n = self._dims
        name = type(self).__name__
        in_channels, out_channels, groups = (_check.integer(v, f"{name} {arg}", lo=1) for arg, v in (
            ("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)))
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) must both be "
                             f"divisible by groups ({groups})")
        if padding_mode != "zeros":
            raise NotImplementedError(f"{name}: only padding_mode='zeros' is supported, got {padding_mode!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _check.ints(kernel_size, n, "kernel_size", 1)
        self.stride = _check.ints(stride, n, "stride", 1)
        self.dilation = _check.ints(dilation, n, "dilation", 1)
        if isinstance(padding, str):
            if padding == "valid":
                padding = 0
            elif padding == "same":
                if any(s != 1 for s in self.stride):
                    raise ValueError(f"{name}: padding='same' needs stride 1, got stride={stride!r}")
                span = [d * (k - 1) for k, d in zip(self.kernel_size, self.dilation)]
                if any(s % 2 for s in span):
                    raise NotImplementedError(f"{name}: padding='same' with an even (dilated) kernel needs "
                                              "asymmetric padding, which is not supported")
                padding = tuple(s // 2 for s in span)
            else:
                raise ValueError(f"{name}: padding must be an int, a tuple, 'valid' or 'same', got {padding!r}")
        self.padding = _check.ints(padding, n, "padding", 0)
        self.padding_mode = padding_mode
        # Set False on a network's first layer: backward then skips the (unused) input gradient
        # and returns None.
        self.input_grad = True
        self.weight = Parameter(np.zeros((self.out_channels, self.in_channels // self.groups) + self.kernel_size),
                                dtype=dtype)
        self.register_parameter("bias", Parameter(np.zeros(self.out_channels), dtype=dtype) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: kaiming_uniform(a=sqrt(5)) weights, bias U(+-1/sqrt(fan_in))."""
        _init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.data[0].size
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            _init.uniform_(self.bias, -bound, bound)

    def _geometry(self, x):
        check_array(self, x)
        if x.ndim != self._dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"{self!r}: expected input of shape {self._shape_doc} with C={self.in_channels}, "
                             f"got shape {tuple(x.shape)}")
        check_dtype(self, x, self.weight.data)
        return tuple(window_out_size(n, k, s, p, d, f"{type(self).__name__} input size {n}")
                     for n, k, s, p, d in zip(x.shape[2:], self.kernel_size, self.stride, self.padding,
                                              self.dilation))

    def _compile_eval(self, b, src, following):
        """One kernel: the convolution with its bias, a following eval BatchNorm and activation."""
        x = b.value(src)
        out_sp = self._geometry(x)
        bias = self.bias.data if self.bias is not None else None
        if not inference.float32(self.weight.data, bias):
            return None
        bn, (act, slope), n = inference.absorb_epilogue(following, self.out_channels, self._dims + 2)
        N = x.shape[0]
        w = self.weight.data
        geometry = dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)
        if self._dims == 1:  # the 2-D kernel on (N, C, 1, L)
            geometry = dict(stride=(1,) + self.stride, padding=(0,) + self.padding, dilation=(1,) + self.dilation,
                            groups=self.groups)
            x4 = inference.view(b, src, (N, self.in_channels, 1, x.shape[2]))
            w = w.reshape(w.shape[0], w.shape[1], 1, w.shape[2])
            shape4 = (N, self.out_channels, 1) + out_sp
        else:
            x4, shape4 = src, (N, self.out_channels) + out_sp
        y = inference.kernel_step(b, x4, shape4, lambda out: prepared.prepare_conv2d(
            b.value(x4).shape, w, bias, bn=inference.bn_dict(bn), act=act, negative_slope=slope, out=out, **geometry))
        return (inference.view(b, y, (N, self.out_channels) + out_sp) if self._dims == 1 else y), n

    def _forward(self, x):
        w = self.weight.data
        out_sp = self._geometry(x)
        N = x.shape[0]
        geometry = dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)
        shapes = ops.conv2d_buffer_shapes if self._dims == 2 else ops.conv1d_buffer_shapes
        col_shape, work_shape = shapes(x.shape, w.shape, like=x, **geometry)  # cupy x: the im2col path
        y = self._buffer("y", (N, self.out_channels) + out_sp, w)
        col = self._buffer("col", col_shape, w)
        work = None if work_shape is None else self._buffer("work", work_shape, w)
        fwd = ops.conv2d_forward if self._dims == 2 else ops.conv1d_forward
        y, col = fwd(x, w, self.bias.data if self.bias is not None else None, out=y, col=col, workspace=work,
                     **geometry)
        self._cache = (tuple(x.shape), col, work)
        return y

    def backward(self, grad_output):
        # backward consumes the saved columns: a second backward of one forward finds none
        x_shape, col, work = self._saved()
        del self.__dict__["_cache"]
        w = self.weight.data
        gx = self._buffer("gx", x_shape, w) if self.input_grad else None
        bwd = ops.conv2d_backward if self._dims == 2 else ops.conv1d_backward
        return bwd(grad_output, col, w, x_shape, stride=self.stride, padding=self.padding, dilation=self.dilation,
                   groups=self.groups, grad_input=gx, grad_weight=self.weight.grad,
                   grad_bias=self.bias.grad if self.bias is not None else None, need_input_grad=self.input_grad,
                   workspace=work)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if any(self.padding):
            s += f", padding={self.padding}"
        if any(d != 1 for d in self.dilation):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Conv1d(_ConvNd):
    """1-D convolution over (N, C, L); weight (out_channels, in_channels/groups, kernel_size)."""

    _dims = 1
    _shape_doc = "(N, C, L)"


class Conv2d(_ConvNd):
    """2-D convolution over (N, C, H, W); weight (out_channels, in_channels/groups, kH, kW)."""

    _dims = 2
    _shape_doc = "(N, C, H, W)"
