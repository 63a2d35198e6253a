"""BatchNorm1d/2d (PyTorch's running-statistics rule, optional fused ReLU + dropout used by
Sequential) and LayerNorm, all through the fused kernels."""
from __future__ import annotations

import numpy as np

from .. import ops
from .. import random as frandom
from ..ops import _check, prepared
from . import inference
from ._inputs import check_array, check_dtype
from .module import Module
from .parameter import Parameter


def batchnorm_usable(n: int, batch_size: int) -> int:
    """How many of n samples, cut into batches of batch_size, can train batchnorm: all of them
    except a last batch of a single sample, whose batch variance is undefined (it is left out)."""
    return n - 1 if n > batch_size and n % batch_size == 1 else n


def _affine_parameters(module, present, shape, dtype):
    """A normalization's learnable scale (ones) and shift (zeros) of `shape`, or None for both."""
    for name, fill in (("weight", 1.0), ("bias", 0.0)):
        module.register_parameter(name, Parameter(np.full(shape, fill), dtype=dtype) if present else None)


class _BatchNorm(inference.Compiled, Module):
    _bn_ndims: tuple = ()  # the input dimensions it takes, and folds into a preceding kernel in eval mode
    _shape_doc = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum=0.1, affine: bool = True,
                 track_running_stats: bool = True, dtype=None):
        super().__init__()
        self.num_features = _check.integer(num_features, f"{type(self).__name__} num_features", lo=1)
        self.eps = _check.number(eps, "eps", lo=0.0, lo_open=True)
        self.momentum = None if momentum is None else _check.number(momentum, "momentum", lo=0.0, hi=1.0)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        dt = np.float32 if dtype is None else np.dtype(dtype)
        _affine_parameters(self, self.affine, self.num_features, dt)
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(self.num_features, dtype=dt))
            self.register_buffer("running_var", np.ones(self.num_features, dtype=dt))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.fill(0)
            self.running_var.fill(1)
            self.num_batches_tracked.fill(0)

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            self.weight.data.fill(1)
            self.bias.data.fill(0)

    def _check_input(self, x):
        check_array(self, x)
        if x.ndim not in self._bn_ndims or x.shape[1] != self.num_features:
            raise ValueError(f"{self!r}: expected input of shape {self._shape_doc} with C={self.num_features}, "
                             f"got shape {tuple(x.shape)}")
        ref = self.weight.data if self.affine else (self.running_mean if self.track_running_stats else None)
        if ref is not None:
            check_dtype(self, x, ref)
        elif x.dtype.kind != "f":
            raise TypeError(f"{self!r}: expected a floating-point input, got {x.dtype}")

    def _compile_eval(self, b, src, following):
        """Running statistics folded into a per-channel scale and shift, with a following activation."""
        x = b.value(src)
        self._check_input(x)
        w = self.weight.data if self.affine else None
        if not self.track_running_stats or not inference.float32(self.running_mean, self.running_var, w):
            return None  # eval with batch statistics: the regular forward
        _, (act, slope), n = inference.absorb_epilogue(following, self.num_features)
        return inference.kernel_step(b, src, x.shape, lambda out: prepared.prepare_channel_affine(
            x.shape, bn=inference.bn_dict(self), act=act, negative_slope=slope, out=out)), n

    def _forward(self, x, relu=False, p=0.0):
        """Batch norm, optionally followed by ReLU and dropout(p) in the same pass."""
        self._check_input(x)
        use_batch_stats = self.training or not self.track_running_stats
        update = self.training and self.track_running_stats
        momentum = 0.0 if self.momentum is None else self.momentum
        if update:
            self.num_batches_tracked += 1
            if self.momentum is None:  # cumulative moving average, as PyTorch
                momentum = 1.0 / float(self.num_batches_tracked)
        p = p if (relu and use_batch_stats) else 0.0
        seed = offset = 0
        if p > 0:
            seed, offset = frandom.next_philox(x.size)
        w = self.weight.data if self.affine else None
        b = self.bias.data if self.affine else None
        rm = self.running_mean if (update or not use_batch_stats) else None
        rv = self.running_var if (update or not use_batch_stats) else None
        y, mean, invstd = ops.batchnorm_forward(x, w, b, rm, rv, training=use_batch_stats, momentum=momentum,
                                                eps=self.eps, relu=relu, dropout_p=p, seed=seed, offset=offset,
                                                out=self._buffer("y", x.shape, x))
        self._cache = (x, y, mean, invstd, use_batch_stats, relu, p)
        return y

    def backward(self, grad_output):
        x, y, mean, invstd, use_batch_stats, relu, p = self._saved()
        if tuple(grad_output.shape) != tuple(x.shape):
            raise ValueError(f"{self!r}: grad_output must have shape {tuple(x.shape)}, got {tuple(grad_output.shape)}")
        return ops.batchnorm_backward(grad_output, x, y if relu else None, self.weight.data if self.affine else None,
                                      mean, invstd, training=use_batch_stats, relu=relu, dropout_p=p,
                                      grad_input=self._buffer("gx", x.shape, x),
                                      grad_weight=self.weight.grad if self.affine else None,
                                      grad_bias=self.bias.grad if self.affine else None)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L) inputs, per channel C."""

    _bn_ndims = (2, 3)
    _shape_doc = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W) inputs, per channel C."""

    _bn_ndims = (4,)
    _shape_doc = "(N, C, H, W)"


class LayerNorm(inference.Compiled, Module):
    """Normalizes over the trailing ``normalized_shape`` axes, with an elementwise affine."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, dtype=None):
        super().__init__()
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        if not self.normalized_shape or any(s < 1 for s in self.normalized_shape):
            raise ValueError(f"LayerNorm normalized_shape must be positive sizes, got {normalized_shape!r}")
        self.eps = _check.number(eps, "eps", lo=0.0, lo_open=True)
        self.elementwise_affine = bool(elementwise_affine)
        _affine_parameters(self, self.elementwise_affine, self.normalized_shape,
                           np.float32 if dtype is None else np.dtype(dtype))

    def _compile_eval(self, b, src, following):
        x = b.value(src)
        self._check_shape(x)
        w = self.weight.data if self.elementwise_affine else None
        bias = self.bias.data if self.elementwise_affine else None
        if not inference.float32(w, bias):
            return None
        return inference.kernel_step(b, src, x.shape, lambda out: prepared.prepare_layernorm(
            x.shape, w, bias, normalized_ndim=len(self.normalized_shape), eps=self.eps, out=out)), 0

    def _check_shape(self, x):
        k = len(self.normalized_shape)
        if not hasattr(x, "shape") or x.ndim < k or tuple(x.shape[x.ndim - k:]) != self.normalized_shape:
            raise ValueError(f"{self!r}: expected input of shape (*, {', '.join(map(str, self.normalized_shape))}), "
                             f"got shape {tuple(getattr(x, 'shape', ()))}")
        if self.elementwise_affine:
            check_dtype(self, x, self.weight.data)

    def _forward(self, x):
        self._check_shape(x)
        k = len(self.normalized_shape)
        w = self.weight.data if self.elementwise_affine else None
        b = self.bias.data if self.elementwise_affine else None
        y, mean, rstd = ops.layernorm_forward(x, w, b, normalized_ndim=k, eps=self.eps,
                                              out=self._buffer("y", x.shape, x))
        self._cache = (x, mean, rstd)
        return y

    def backward(self, grad_output):
        x, mean, rstd = self._saved()
        aff = self.elementwise_affine
        return ops.layernorm_backward(grad_output, x, self.weight.data if aff else None, mean, rstd,
                                      normalized_ndim=len(self.normalized_shape),
                                      grad_input=self._buffer("gx", x.shape, x),
                                      grad_weight=self.weight.grad if aff else None,
                                      grad_bias=self.bias.grad if aff else None)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
