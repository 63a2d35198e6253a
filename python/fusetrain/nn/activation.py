"""Elementwise activations. Each runs the fused epilogue kernel with no bias and no dropout, and
its backward needs only the forward output."""
from __future__ import annotations

from .. import ops
from .module import Module


class _Activation(Module):
    act = "identity"

    def _slope(self) -> float:
        return 0.01

    def forward(self, x):
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
