"""Elementwise activations. Each runs the fused epilogue kernel with no bias and no dropout, and
its backward needs only the forward output (a LeakyReLU of negative slope: its input, since the
output's sign no longer tells which side of 0 the input was)."""
from __future__ import annotations

from .. import backend, ops
from ..ops import prepared
from . import inference
from ._inputs import check_floating
from .module import Module


class _Activation(inference.Compiled, Module):
    act = "identity"

    def _slope(self) -> float:
        return 0.01

    def _epilogue_act(self):
        """(name, negative slope) for a preceding kernel's epilogue, which reads the slope off the
        output's sign: None for a negative slope."""
        slope = self._slope() if self.act == "leaky_relu" else 0.0
        return None if slope < 0 else (self.act, slope)

    def _compile_eval(self, b, src, following):
        a = inference.act_of(self)
        if a is None:
            return None
        x = b.value(src)
        return inference.kernel_step(b, src, x.shape, lambda out: prepared.prepare_activation(
            x.shape, act=a[0], negative_slope=a[1], out=out)), 0

    def _forward(self, x):
        check_floating(self, x)
        y = ops.bias_act_dropout_forward(x, None, act=self.act, negative_slope=self._slope(),
                                         out=self._buffer("y", x.shape, x))
        self._cache = x if self._slope() < 0 else y
        return y

    def backward(self, grad_output):
        saved = self._saved()
        slope = self._slope()
        if slope < 0:  # saved is the input: d/dx = 1 where x > 0, else the slope (torch's rule)
            if tuple(grad_output.shape) != tuple(saved.shape):
                raise ValueError(f"{self!r}: grad_output must have shape {tuple(saved.shape)}, got "
                                 f"{tuple(grad_output.shape)}")
            gx = self._buffer("gx", saved.shape, saved)
            gx[...] = backend.array_module(saved).where(saved > 0, grad_output, grad_output * slope)
            return gx
        return ops.bias_act_dropout_backward(grad_output, saved, act=self.act, negative_slope=slope,
                                             grad_input=self._buffer("gx", saved.shape, saved))


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
