"""DistributedDataParallel: a model wrapper for hand-written loops whose backward leaves every rank
with the gradients averaged over the ranks (PyTorch's name and contract)."""
from __future__ import annotations

from ..nn.module import Module
from . import world as _world
from .reducer import GradientReducer


class DistributedDataParallel(Module):
    """Wraps ``module`` for data-parallel training on the ranks of ``fusetrain.distributed``.

    On wrapping, every rank takes rank 0's parameters and buffers, so all replicas start alike.
    ``ddp(x)`` runs ``module(x)``; ``ddp.backward(grad)`` runs ``module.backward(grad)`` and
    returns once every rank holds the gradients averaged over the ranks (all-reduced in buckets
    of ``bucket_cap_mb`` MiB that start while backward is still running when ``overlap``), so
    the optimizer step that follows is the same on every rank. Call ``backward`` through the
    wrapper: ``module.backward`` alone averages nothing. Batchnorm statistics stay per rank
    (see ``nn.SyncBatchNorm``). In a world of one it only forwards the calls.

    While wrapped, the layers holding parameters report the end of their backward to the
    wrapper (see ``fusetrain.distributed.reducer.GradientReducer``); ``close()`` ends that.
    ``comm_stats``: steps, gradient bytes per step, buckets started during backward, seconds of
    communication not hidden behind backward.

    Parameters and buffers are the wrapped module's; ``state_dict`` keys start with
    ``module.``, as PyTorch's do. Build the optimizer on ``ddp.parameters()`` or the module's.
    """

    def __init__(self, module, bucket_cap_mb=1.0, overlap=True):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"module must be a fusetrain.nn.Module, got {type(module).__name__}")
        if isinstance(module, DistributedDataParallel):
            raise TypeError("module is already a DistributedDataParallel")
        world = _world.current()
        if world is None:
            raise RuntimeError("DistributedDataParallel needs the process group: call "
                               "fusetrain.distributed.init() first")
        self.module = module
        reducer = GradientReducer(module, world, bucket_cap_mb=bucket_cap_mb, overlap=overlap)
        object.__setattr__(self, "_reducer", reducer if world.size > 1 else None)
        if self._reducer is not None:
            self._reducer.broadcast_state(0)
            self._reducer.attach()

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def backward(self, grad_output):
        if self._reducer is None:
            return self.module.backward(grad_output)
        self._reducer.begin()
        grad_input = self.module.backward(grad_output)
        self._reducer.finish()
        return grad_input

    @property
    def comm_stats(self) -> dict:
        if self._reducer is None:
            return {"steps": 0, "bytes": 0, "early": 0, "exposed_s": 0.0}
        return dict(self._reducer.stats)

    def close(self) -> None:
        """Stop reducing: the module's layers get their own classes back."""
        if self._reducer is not None:
            self._reducer.detach()
            object.__setattr__(self, "_reducer", None)
