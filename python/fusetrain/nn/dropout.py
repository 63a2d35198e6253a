"""Inverted dropout with counter-based (Philox) masks: backward regenerates the mask from the
stored (seed, offset), so no float or byte mask is kept."""
from __future__ import annotations

from .. import ops
from .. import random as frandom
from ..ops import _check
from . import inference
from ._inputs import check_floating
from .module import Module


class Dropout(Module):
    """Zeroes each element with probability p in training (scaling the rest by 1/(1-p)); the
    identity in eval mode. p must be in [0, 1)."""

    _eval_identity = True  # a preceding kernel's epilogue absorbs it in eval mode

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = _check.probability(p, "p")

    @inference.compiles
    def forward(self, x):
        return self._forward(x)

    def _compile_eval(self, b, src, following):
        return (src, 0) if not self.training else None

    def _forward(self, x):
        check_floating(self, x)
        p = _check.probability(self.p, "p")
        if not self.training or p == 0.0:
            self._cache = None
            return x
        seed, offset = frandom.next_philox(x.size)
        self._cache = (p, seed, offset)
        return ops.dropout_forward(x, p, seed, offset, out=self._buffer("y", x.shape, x))

    def backward(self, grad_output):
        if "_cache" not in self.__dict__:
            raise RuntimeError(f"{self!r}: backward() called before forward()")
        cache = self._cache
        if cache is None:
            return grad_output
        p, seed, offset = cache
        return ops.dropout_backward(grad_output, p, seed, offset,
                                    grad_input=self._buffer("gx", grad_output.shape, grad_output))

    def extra_repr(self) -> str:
        return f"p={self.p}"
