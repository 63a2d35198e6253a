"""SyncBatchNorm (PyTorch's): batch norm whose batch statistics and backward sums are taken over every
rank of fusetrain.distributed, so N ranks with batch B/N train as one process with batch B."""
from __future__ import annotations

import numpy as np

from .. import backend, ops
from .. import random as frandom
from . import inference
from .module import Module
from .normalization import _BatchNorm


def _world():
    # imported here: fusetrain.distributed imports fusetrain.nn, and this module is part of it
    from ..distributed import world
    w = world.current()
    return w if w is not None and w.size > 1 else None


class _Synced:
    """What the backward of a synchronized forward needs (told apart from _BatchNorm's own cache)."""

    __slots__ = ("x", "y", "mean", "invstd", "count", "relu", "p")

    def __init__(self, x, y, mean, invstd, count, relu, p):
        self.x, self.y, self.mean, self.invstd, self.count, self.relu, self.p = x, y, mean, invstd, count, relu, p


def _combine(table, channels):
    """Chan et al.'s pairwise update over the rows (count, means, sums of squared deviations) of
    each rank, in rank order: the same arithmetic, so the same bits, on every rank."""
    xp = backend.array_module(table)
    count, mean, m2 = 0.0, xp.zeros(channels), xp.zeros(channels)
    for row in table:
        n = float(row[0])
        if n == 0:
            continue
        total = count + n
        delta = row[1:1 + channels] - mean
        mean = mean + delta * (n / total)
        m2 = m2 + row[1 + channels:] + delta * delta * (count * n / total)
        count = total
    return count, mean, m2


class SyncBatchNorm(_BatchNorm):
    """Batch norm over (N, C) or (N, C, *) inputs whose training-mode statistics are those of the
    whole batch across all ranks: per-channel counts, means and squared deviations of each rank
    (float64) are combined on every rank, and backward all-reduces sum(dy) and sum(dy * x_hat) per
    channel, as torch.nn.SyncBatchNorm does. The running statistics are then the same on every
    rank. Eval mode, and any mode in a world of one (no ``fusetrain.distributed.init()``, or one
    rank), run as the plain BatchNorm. Parameter gradients are this rank's share, averaged over
    the ranks by the Trainer or DistributedDataParallel like every other gradient.

    Every rank must call forward (and backward) the same number of times: each call is a
    collective. ``convert_sync_batchnorm(model)`` replaces a model's BatchNorm1d/2d layers.
    """

    _bn_ndims = (2, 3, 4, 5)
    _shape_doc = "(N, C) or (N, C, *)"

    def _forward(self, x, relu=False, p=0.0):
        world = _world() if self.training else None
        if world is None:
            return super()._forward(x, relu, p)
        self._check_input(x)
        xp = backend.array_module(x)
        n, c = x.shape[0], x.shape[1]
        x3 = x.reshape(n, c, -1)
        local = n * x3.shape[2]
        table = xp.zeros((world.size, 1 + 2 * c), dtype=np.float64)
        row = table[world.rank]
        row[0] = local
        if local:
            mean = x3.sum(axis=(0, 2), dtype=np.float64) / local
            m32 = mean.astype(x.dtype)
            d = xp.subtract(x3, m32[None, :, None])
            xp.square(d, out=d)
            # sum of squares about the float32 mean, corrected to the float64 one
            row[1:1 + c] = mean
            row[1 + c:] = d.sum(axis=(0, 2), dtype=np.float64) - local * (mean - m32) ** 2
        world.all_reduce(table)
        count, mean, m2 = _combine(table, c)
        if count <= 1:
            raise ValueError(f"{self!r}: expected more than 1 value per channel over all ranks when training, got "
                             f"{int(count)} (input shape {tuple(x.shape)} here)")
        var = m2 / count
        if self.track_running_stats:
            self.num_batches_tracked += 1
            momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            self.running_mean[...] = (1 - momentum) * self.running_mean + momentum * mean
            self.running_var[...] = (1 - momentum) * self.running_var + momentum * (m2 / (count - 1))
        w = self.weight.data if self.affine else None
        b = self.bias.data if self.affine else None
        mean = mean.astype(x.dtype)
        # normalizing with given statistics is eval-mode batch norm (with its fused ReLU)
        y, mean, invstd = ops.batchnorm_forward(x, w, b, mean, var.astype(x.dtype), training=False,
                                                eps=self.eps, relu=relu)
        p = p if relu else 0.0
        if p > 0:
            seed, offset = frandom.next_philox(x.size)
            ops.bias_act_dropout_forward(y, None, act="identity", p=p, seed=seed, offset=offset, out=y)
        self._cache = _Synced(x, y, mean, invstd, count, relu, p)
        return y

    def backward(self, grad_output):
        cache = self.__dict__.get("_cache")
        if not isinstance(cache, _Synced):
            return super().backward(grad_output)
        x = cache.x
        if tuple(grad_output.shape) != tuple(x.shape):
            raise ValueError(f"{self!r}: grad_output must have shape {tuple(x.shape)}, got {tuple(grad_output.shape)}")
        world = _world()
        if world is None:
            raise RuntimeError(f"{self!r}: the process group went away between forward and backward")
        xp = backend.array_module(x)
        c = x.shape[1]
        w = self.weight.data if self.affine else None
        dw, db = xp.zeros(c, dtype=x.dtype), xp.zeros(c, dtype=x.dtype)
        # eval-mode backward: dx = dy' * w * invstd, and this rank's sum(dy') and sum(dy' * x_hat)
        gx = ops.batchnorm_backward(grad_output, x, cache.y if cache.relu else None, w, cache.mean, cache.invstd,
                                    training=False, relu=cache.relu, dropout_p=cache.p, grad_weight=dw, grad_bias=db)
        sums = xp.concatenate([db, dw]).astype(np.float64)
        world.all_reduce(sums)
        # the batch statistics' share: dx -= w * invstd / n * (sum dy' + x_hat * sum(dy' * x_hat))
        invstd = cache.invstd.astype(np.float64)
        scale = (w.astype(np.float64) if w is not None else 1.0) * invstd / cache.count
        g3, x3 = gx.reshape(x.shape[0], c, -1), x.reshape(x.shape[0], c, -1)
        t = xp.subtract(x3, cache.mean[None, :, None])
        t *= (scale * invstd * sums[c:]).astype(x.dtype)[None, :, None]
        g3 -= t
        g3 -= (scale * sums[:c]).astype(x.dtype)[None, :, None]
        if self.affine:
            self.weight.grad += dw
            self.bias.grad += db
        return gx

    @classmethod
    def convert_sync_batchnorm(cls, module):
        """``module`` with every BatchNorm1d/2d (at any depth) replaced by a SyncBatchNorm that
        holds the same Parameter objects and statistics arrays (an optimizer built on the model
        still updates them; state_dict keys are unchanged). A layer used at several places is
        replaced by one SyncBatchNorm. Returns the converted module (a new one when ``module`` is
        itself a BatchNorm)."""
        if not isinstance(module, Module):
            raise TypeError(f"convert_sync_batchnorm expects a fusetrain.nn.Module, got {type(module).__name__}")
        memo: dict = {}

        def convert(m):
            if id(m) in memo:
                return memo[id(m)]
            out = m
            if isinstance(m, _BatchNorm) and not isinstance(m, cls):
                out = cls(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                          track_running_stats=m.track_running_stats)
                for name in ("weight", "bias"):
                    out._parameters[name] = m._parameters[name]
                for name in ("running_mean", "running_var", "num_batches_tracked"):
                    out._buffers[name] = m._buffers[name]
                object.__setattr__(out, "training", m.training)
            memo[id(m)] = out
            for name, child in m._modules.items():
                if child is not None:
                    out._modules[name] = convert(child)  # in place: the children keep their order
            return out

        converted = convert(module)
        inference.bump()  # compiled plans and Sequential's fused chains hold the old layers
        return converted
