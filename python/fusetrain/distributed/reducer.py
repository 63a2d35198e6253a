"""Gradient averaging over the ranks: buckets of the gradient arena all-reduced in place, without
blocking, as soon as backward is done with them (last layers first), waited for before the step."""
from __future__ import annotations

import math
import time
import weakref

import numpy as np

from .. import backend
from ..nn import inference
from ..nn.module import Module

_HOOKED: dict = {}  # a module class -> its subclass that reports its forward calls and backwards
_OWNER: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # module -> the reducer it reports to


def _hooked(cls):
    """cls, reporting to the module's reducer (if any) each forward call that keeps state for a
    backward (Module._save) and the return of each backward."""
    sub = _HOOKED.get(cls)
    if sub is None:
        def _save(self, value):
            reducer = _OWNER.get(self)
            if reducer is not None:
                reducer._forward_call(self)
            cls._save(self, value)

        def backward(self, grad_output):
            result = cls.backward(self, grad_output)
            reducer = _OWNER.get(self)
            if reducer is not None:
                reducer._backward_done(self)
            return result
        backward._replays = True  # cls.backward already replays a compiled eval forward
        sub = type(cls.__name__, (cls,), {"_save": _save, "backward": backward, "__module__": cls.__module__,
                                          "__qualname__": cls.__qualname__, "__doc__": cls.__doc__,
                                          "_unhooked": cls})
        _HOOKED[cls] = sub
    return sub


class _Region:
    """A contiguous run of gradients (part of an arena, or one loose parameter) with its values' twin."""

    __slots__ = ("grad", "data", "params")

    def __init__(self, grad, data, params):
        self.grad, self.data, self.params = grad, data, params  # params: [(param, start in the run)]


class _Bucket:
    __slots__ = ("grad", "params")

    def __init__(self, region, lo, hi):
        self.grad = region.grad[lo:hi]
        self.params = [p for p, start in region.params if start < hi and start + p.size > lo]


def _regions(params):
    """The gradients of ``params`` as contiguous runs: consecutive views of one arena merge."""
    by_arena, regions = {}, []
    for p in params:
        if p._arena is None:
            regions.append(_Region(p.grad.reshape(-1), p.data.reshape(-1), [(p, 0)]))
        else:
            by_arena.setdefault(id(p._arena), (p._arena, []))[1].append(p)
    for arena, ps in by_arena.values():
        ps.sort(key=lambda p: p._offset)
        runs = [[ps[0]]]
        for p in ps[1:]:
            last = runs[-1][-1]
            if p._offset == last._offset + last.size:
                runs[-1].append(p)
            else:
                runs.append([p])
        for run in runs:
            start, stop = run[0]._offset, run[-1]._offset + run[-1].size
            regions.append(_Region(arena.grad[start:stop], arena.data[start:stop],
                                   [(q, q._offset - start) for q in run]))
    order = {id(p): i for i, p in enumerate(params)}
    # backward reaches the model's last parameters first: their runs go first
    regions.sort(key=lambda r: -order[id(r.params[0][0])])
    return regions


class Transport:
    """In-place, non-blocking sums over the ranks with MPI on host arrays (requests progressed by
    test()); MPICH reduces in place several times faster than into another buffer."""

    def __init__(self, world):
        self.world = world
        self.comm = world.comm.Dup()  # our requests never interleave with other collectives' order
        self.sum, self.in_place = world.mpi.SUM, world.mpi.IN_PLACE

    def start(self, array):
        return self.comm.Iallreduce(self.in_place, array, op=self.sum)

    def test(self, requests) -> None:
        self.world.mpi.Request.Testall(requests)

    def wait(self, requests) -> None:
        self.world.mpi.Request.Waitall(requests)

    def all_reduce(self, array) -> None:
        self.comm.Allreduce(self.in_place, array, op=self.sum)

    def small_sums(self, values):
        a = np.array(values, dtype=np.float64)
        self.comm.Allreduce(self.in_place, a, op=self.sum)
        return a

    def free(self) -> None:
        self.comm.Free()


class NCCLTransport(Transport):
    """The same on CuPy arrays: NCCL all-reduces on a stream of their own, each ordered after the
    work the current stream has queued so far (the gradients it is started for); small sums of
    host numbers still go through MPI."""

    def __init__(self, world):
        super().__init__(world)
        self.nccl = world.nccl()
        self.cp = backend.cupy_module()
        self.stream = self.cp.cuda.Stream(non_blocking=True)

    def start(self, array):
        self.stream.wait_event(self.cp.cuda.get_current_stream().record())
        self.nccl.all_reduce(array, stream=self.stream)
        return None

    def test(self, requests) -> None:
        pass

    def wait(self, requests) -> None:
        self.cp.cuda.get_current_stream().wait_event(self.stream.record())

    def all_reduce(self, array) -> None:
        self.nccl.all_reduce(array)


class GradientReducer:
    """Averages ``model``'s gradients over the ranks of ``world`` after each backward.

    Use: ``attach()`` once, then around every backward ``begin()`` ... ``finish()``; ``detach()``
    when done. While attached, the modules that hold parameters report each forward call that
    keeps state for a backward and each return of their backward (their class is swapped for a
    subclass of the same name that does; ``type(m) is nn.Linear`` is then False, ``isinstance``
    holds). A parameter's gradient is complete once every module holding it has run as many
    backwards as it had such forward calls since the last step; a bucket (a contiguous part of
    the gradient arena, last layers first) is all-reduced as soon as all its parameters are
    complete and the buckets before it have started, so the ranks start them in the same order,
    as MPI requires. Buckets nobody completed (a layer whose backward did not run) start when
    backward has ended. The requests are progressed at each report; ``finish()`` waits for them
    and divides by the number of ranks. This assumes what every fusetrain layer does: a
    parameter's gradient is written only by the backward of the modules holding it.

    ``stats``: ``steps``, ``bytes`` (gradient bytes per step), ``early`` (buckets started while
    backward was running, summed over the steps), ``exposed_s`` (seconds this rank spent in the
    reducer before, during and after backward: communication not hidden behind backward).
    """

    def __init__(self, model, world, bucket_cap_mb=1.0, overlap=True):
        if not isinstance(model, Module):
            raise TypeError(f"model must be a fusetrain.nn.Module, got {type(model).__name__}")
        if isinstance(bucket_cap_mb, bool) or not isinstance(bucket_cap_mb, (int, float)) or \
                not math.isfinite(bucket_cap_mb) or bucket_cap_mb <= 0:
            raise ValueError(f"bucket_cap_mb must be a positive number, got {bucket_cap_mb!r}")
        if not isinstance(overlap, bool):
            raise TypeError(f"overlap must be a bool, got {type(overlap).__name__}")
        self.model, self.world = model, world
        self.bucket_bytes = int(bucket_cap_mb * 2**20)
        self.overlap = overlap
        self.stats = {"steps": 0, "bytes": 0, "early": 0, "exposed_s": 0.0}
        self._transport = None
        self._signature = None
        self._version = None
        self._active = False
        self._hooked = []
        self._calls: dict = {}  # id(module) -> forward calls since the last step

    # ------------------------------------------------------------------ set-up
    def attach(self) -> None:
        """Have every module holding parameters report to this reducer."""
        for m in self.model.modules():
            if not any(p is not None for p in m._parameters.values()):
                continue
            owner = _OWNER.get(m)
            if owner is not None and owner is not self:
                raise RuntimeError(f"{type(m).__name__} already reports to another DistributedDataParallel or "
                                   "Trainer; one model can be reduced by one of them at a time")
            _OWNER[m] = self
            if "_unhooked" not in type(m).__dict__:
                object.__setattr__(m, "__class__", _hooked(type(m)))
            self._hooked.append(m)
        self._calls = {}

    def detach(self) -> None:
        """Give the modules their own classes back."""
        for m in self._hooked:
            if _OWNER.get(m) is self:
                del _OWNER[m]
            unhooked = type(m).__dict__.get("_unhooked")
            if unhooked is not None:
                object.__setattr__(m, "__class__", unhooked)
        self._hooked = []
        self._active = False
        if self._transport is not None:
            self._transport.free()
            self._transport = None

    def broadcast_state(self, src=0) -> None:
        """Every rank takes rank ``src``'s parameters and buffers (batchnorm statistics)."""
        self._layout()
        for r in self._regions:
            self.world.broadcast(r.data, src)
        for _, b in self.model.named_buffers():
            if hasattr(b, "shape") and getattr(b, "size", 0):
                self.world.broadcast(b, src)

    def _layout(self):
        """(Re)build the buckets when the parameters moved (a model.to(), an optimizer's packing)."""
        version = inference.version()  # any new parameter or rebinding bumps it: nothing to check then
        if self._signature is not None and version == self._version:
            return
        self._version = version
        params = list(self.model.parameters())
        signature = [(p, p._arena, p._offset) for p in params]
        same = self._signature is not None and len(signature) == len(self._signature) and all(
            a[0] is b[0] and a[1] is b[1] and a[2] == b[2] for a, b in zip(signature, self._signature))
        if not same:
            if not params:
                raise ValueError(f"the {type(self.model).__name__} has no parameters to reduce")
            self._signature = signature
            self._plan(params)
        on_gpu = backend.is_cuda_array(self._regions[0].grad)
        if self._transport is not None and isinstance(self._transport, NCCLTransport) != on_gpu:
            self._transport.free()  # the model moved between host and GPU
            self._transport = None
        if self._transport is None:
            self._transport = (NCCLTransport if on_gpu else Transport)(self.world)

    def _plan(self, params):
        self._regions = _regions(params)
        itemsize = self._regions[0].grad.dtype.itemsize
        step = max(1, self.bucket_bytes // itemsize)
        self._buckets = []
        for r in self._regions:
            hi = r.grad.size
            while hi > 0:
                self._buckets.append(_Bucket(r, max(0, hi - step), hi))
                hi -= step
        self.stats["bytes"] = sum(r.grad.size for r in self._regions) * itemsize
        held = {id(m): {id(p): p for p in m._parameters.values() if p is not None} for m in self.model.modules()}
        owners, buckets_of = {}, {}
        for m in self.model.modules():
            for key in held[id(m)]:
                owners.setdefault(key, []).append(m)
        for i, b in enumerate(self._buckets):
            for p in b.params:
                buckets_of.setdefault(id(p), []).append(i)
        # per module: each parameter it holds (once), with all its holders and the buckets it lies in
        self._params_of = {m: [(owners[key], buckets_of.get(key, [])) for key in params]
                           for m, params in held.items() if params}
        self._missing = [len(b.params) for b in self._buckets]

    # ------------------------------------------------------------------ per step
    def begin(self) -> None:
        """Call before the model's backward (after its forward)."""
        t0 = time.perf_counter()
        self._layout()
        self._backs: dict = {}
        self._pending = list(self._missing)
        self._requests, self._next = [], 0
        self._active = True
        self.stats["exposed_s"] += time.perf_counter() - t0

    def _forward_call(self, module) -> None:
        key = id(module)
        self._calls[key] = self._calls.get(key, 0) + 1

    def _complete(self, module) -> bool:
        key = id(module)
        return self._backs.get(key, 0) == self._calls.get(key, 0) > 0

    def _backward_done(self, module) -> None:
        if not self._active:
            return
        t0 = time.perf_counter()
        key = id(module)
        self._backs[key] = self._backs.get(key, 0) + 1
        if self.overlap and self._complete(module):
            for holders, buckets in self._params_of.get(key, ()):
                if all(h is module or self._complete(h) for h in holders):
                    for i in buckets:
                        self._pending[i] -= 1
            while self._next < len(self._buckets) and self._pending[self._next] <= 0:
                self._requests.append(self._transport.start(self._buckets[self._next].grad))
                self._next += 1
                self.stats["early"] += 1
        if self._requests:
            self._transport.test(self._requests)
        self.stats["exposed_s"] += time.perf_counter() - t0

    def finish(self, extra=()):
        """Wait for every bucket, divide by the number of ranks, and return ``extra`` (numbers of
        this rank) summed over the ranks (one more small message, sent while the buckets fly)."""
        t0 = time.perf_counter()
        if not self._active:
            raise RuntimeError("finish() without begin(): call begin() before the model's backward")
        self._active = False
        self._calls = {}
        while self._next < len(self._buckets):
            self._requests.append(self._transport.start(self._buckets[self._next].grad))
            self._next += 1
        sums = self._transport.small_sums(list(extra)) if len(extra) else []
        self._transport.wait([q for q in self._requests if q is not None])
        self._requests = []
        scale = 1.0 / self.world.size
        for r in self._regions:
            r.grad *= r.grad.dtype.type(scale)
        self.stats["steps"] += 1
        self.stats["exposed_s"] += time.perf_counter() - t0
        return [float(v) for v in sums]
