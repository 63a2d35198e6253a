"""Elementwise activations. Each runs the fused epilogue kernel with no bias and no dropout, and
its backward needs only the forward output."""
from __future__ import annotations

from .. import ops
from ..ops import prepared
from . import inference
from .module import Module


class _Activation(Module):
    act = "identity"

    def _slope(self) -> float:
        return 0.01

    @inference.compiles
    def forward(self, x):
        if not self.training and inference.eligible(x):
            return inference.run(self, x)
        return self._forward(x)

    def _compile_eval(self, b, src, following):
        a = inference.act_of(self)
        if a is None:
            return None
        x = b.value(src)
        return inference.kernel_step(b, src, x.shape, lambda out: prepared.prepare_activation(
            x.shape, act=a[0], negative_slope=a[1], out=out)), 0

    def _forward(self, x):
        if not hasattr(x, "dtype") or x.dtype.kind != "f":
            raise TypeError(f"{self!r}: expected a floating-point array, got "
                            f"{getattr(x, 'dtype', type(x).__name__)}")
        y = ops.bias_act_dropout_forward(x, None, act=self.act, negative_slope=self._slope(),
                                         out=self._buffer("y", x.shape, x))
        self._cache = y
        return y

    def backward(self, grad_output):
        y = self.__dict__.get("_cache")
        if y is None:
            raise RuntimeError(f"{self!r}: backward() called before forward()")
        return ops.bias_act_dropout_backward(grad_output, y, act=self.act, negative_slope=self._slope(),
                                             grad_input=self._buffer("gx", y.shape, y))


class ReLU(_Activation):
    """max(x, 0)."""

    act = "relu"


class LeakyReLU(_Activation):
    """x if x > 0 else negative_slope * x."""

    act = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def _slope(self) -> float:
        return self.negative_slope

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(_Activation):
    """1 / (1 + exp(-x))."""

    act = "sigmoid"


class Tanh(_Activation):
    """tanh(x)."""

    act = "tanh"
