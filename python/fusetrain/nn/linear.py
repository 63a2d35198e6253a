"""Linear (fusetrain's GEMM, then the fused bias/activation/dropout epilogue), Identity, Flatten."""
from __future__ import annotations

import math

import numpy as np

from .. import ops
from .. import random as frandom
from ..ops import _check, prepared
from . import inference
from . import init as _init
from ._inputs import check_array, check_dtype
from .module import Module
from .parameter import Parameter


class Linear(inference.Compiled, Module):
    """y = x @ weight.T + bias, weight (out_features, in_features).

    Default init is PyTorch's (kaiming_uniform with a=sqrt(5), bias U(-1/sqrt(fan_in), +)).
    ``init`` may name any ``fusetrain.nn.init`` scheme (``"he_normal"``, ``"glorot_uniform"``, ...)
    or be a callable taking the weight; the bias is then zero-initialised.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, init=None, dtype=None):
        super().__init__()
        self.in_features = _check.integer(in_features, "Linear in_features", lo=0)
        self.out_features = _check.integer(out_features, "Linear out_features", lo=0)
        # Set False on a network's first layer: backward then skips the (unused) input-gradient
        # GEMM and returns None.
        self.input_grad = True
        self.init = init
        self._init_fn = _init.get(init) if init is not None else None
        self.weight = Parameter(np.zeros((self.out_features, self.in_features)), dtype=dtype)
        self.register_parameter("bias", Parameter(np.zeros(self.out_features), dtype=dtype) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self._init_fn is None:
            _init.kaiming_uniform_(self.weight, a=math.sqrt(5))
            if self.bias is not None:
                bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
                _init.uniform_(self.bias, -bound, bound)
        else:
            self._init_fn(self.weight)
            if self.bias is not None:
                _init.zeros_(self.bias)

    def _check_input(self, x):
        check_array(self, x)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"{self!r}: expected input of shape (*, {self.in_features}) "
                             f"(in_features={self.in_features}), got shape {tuple(x.shape)}")
        check_dtype(self, x, self.weight.data)

    def _compile_eval(self, b, src, following):
        """GEMM with the bias, a following eval BatchNorm1d and activation as its epilogue."""
        x = b.value(src)
        self._check_input(x)
        bias = self.bias.data if self.bias is not None else None
        if not inference.float32(self.weight.data, bias):
            return None
        lead = x.shape[:-1]
        M = math.prod(lead)
        bn, (act, slope), n = inference.absorb_epilogue(following if x.ndim == 2 else (), self.out_features, 2)
        x2 = inference.view(b, src, (M, self.in_features))
        y = inference.kernel_step(b, x2, (M, self.out_features), lambda out: prepared.prepare_linear(
            (M, self.in_features), self.weight.data, bias, bn=inference.bn_dict(bn), act=act, negative_slope=slope,
            out=out))
        return inference.view(b, y, lead + (self.out_features,)), n

    def _forward(self, x, act="identity", negative_slope=0.01, p=0.0):
        """GEMM then the epilogue dropout(act(. + bias)); dropout draws are reserved here exactly
        as a separate Dropout layer would reserve them."""
        w = self.weight.data
        self._check_input(x)
        lead = x.shape[:-1]
        x2 = x.reshape(math.prod(lead), self.in_features)  # -1 cannot be inferred when in_features is 0
        y = self._buffer("y", (x2.shape[0], self.out_features), w)
        ops.matmul(x2, w.T, y)
        seed = offset = 0
        if p > 0:
            seed, offset = frandom.next_philox(y.size)
        b = self.bias.data if self.bias is not None else None
        if b is not None or act != "identity" or p > 0:
            ops.bias_act_dropout_forward(y, b, act=act, negative_slope=negative_slope, p=p, seed=seed,
                                         offset=offset, out=y)
        self._cache = (x2, y, lead, act, negative_slope, p, seed, offset)
        return y.reshape(lead + (self.out_features,))

    def backward(self, grad_output):
        x2, y, lead, act, slope, p, seed, offset = self._saved()
        w = self.weight.data
        if tuple(grad_output.shape) != lead + (self.out_features,):
            raise ValueError(f"{self!r}: grad_output must have shape {lead + (self.out_features,)}, "
                             f"got {tuple(grad_output.shape)}")
        g = grad_output.reshape(x2.shape[0], self.out_features)
        gb = self.bias.grad if self.bias is not None else None
        if act != "identity" or p > 0:
            gz = self._buffer("gz", g.shape, w)
            g = ops.bias_act_dropout_backward(g, y, act=act, negative_slope=slope, p=p, seed=seed,
                                              offset=offset, grad_bias=gb, grad_input=gz)
        elif gb is not None:
            gb += g.sum(axis=0)
        ops.matmul(g.T, x2, self.weight.grad, accumulate=True)
        if not self.input_grad:
            return None
        gx = self._buffer("gx", x2.shape, w)
        ops.matmul(g, w, gx)
        return gx.reshape(lead + (self.in_features,))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Identity(Module):
    """Returns its input; backward returns the gradient."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    @inference.compiles
    def forward(self, x):
        return x

    def _forward(self, x):
        return x

    def _compile_eval(self, b, src, following):
        return src, 0

    def backward(self, grad_output):
        return grad_output


class Flatten(Module):
    """Flattens dims start_dim..end_dim into one (PyTorch's defaults: 1 and -1)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = int(start_dim)
        self.end_dim = int(end_dim)

    @inference.compiles
    def forward(self, x):
        return self._forward(x)

    def _compile_eval(self, b, src, following):
        x = b.value(src)
        if x.ndim == 0:
            return None
        return inference.view(b, src, self._out_shape(x)), 0

    def _out_shape(self, x):
        nd = x.ndim
        s = self.start_dim + nd if self.start_dim < 0 else self.start_dim
        e = self.end_dim + nd if self.end_dim < 0 else self.end_dim
        if not (0 <= s < max(nd, 1)) or not (0 <= e < max(nd, 1)) or s > e:
            raise ValueError(f"{self!r}: dims {self.start_dim}..{self.end_dim} invalid for input of shape {tuple(x.shape)}")
        return x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:]

    def _forward(self, x):
        shape = self._out_shape(x)
        self._cache = x.shape
        return x.reshape(1) if x.ndim == 0 else x.reshape(shape)

    def backward(self, grad_output):
        return grad_output.reshape(self._saved())

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
