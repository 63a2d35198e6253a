"""Gradient averaging over the ranks: the gradient arena is cut into buckets that are all-reduced
without blocking as soon as backward is done with them (last layers first), and waited for once,
before the optimizer step; the parameters' modules tell when backward is done with them."""
from __future__ import annotations

import math
import time
import weakref

import numpy as np

from .. import backend
from ..nn.module import Module

_HOOKED: dict = {}  # a module class -> its subclass that reports the end of each backward
_OWNER: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # module -> the reducer it reports to


def _hooked(cls):
    """cls with a backward that tells the module's reducer (if any) when it has returned."""
    sub = _HOOKED.get(cls)
    if sub is None:
        def backward(self, grad_output):
            result = cls.backward(self, grad_output)
            reducer = _OWNER.get(self)
            if reducer is not None:
                reducer._module_done(self)
            return result
        backward._replays = True  # cls.backward already replays a compiled eval forward
        sub = type(cls.__name__, (cls,), {"backward": backward, "__module__": cls.__module__,
                                          "__qualname__": cls.__qualname__, "__doc__": cls.__doc__,
                                          "_unhooked": cls})
        _HOOKED[cls] = sub
    return sub


class _Region:
    """A contiguous run of gradients (part of an arena, or one loose parameter) with its values' twin."""

    __slots__ = ("grad", "data", "params", "recv")

    def __init__(self, grad, data, params):
        self.grad, self.data, self.params = grad, data, params  # params: [(param, start in the run)]
        self.recv = None


class _Bucket:
    __slots__ = ("region", "lo", "hi", "params")

    def __init__(self, region, lo, hi):
        self.region, self.lo, self.hi = region, lo, hi
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
    """Non-blocking sums over the ranks with MPI on host arrays (requests progressed by test())."""

    def __init__(self, world):
        self.world = world
        self.comm = world.comm.Dup()  # our requests never interleave with other collectives' order
        self.sum = world.mpi.SUM

    def start(self, send, recv):
        return self.comm.Iallreduce(send, recv, op=self.sum)

    def test(self, requests) -> None:
        self.world.mpi.Request.Testall(requests)

    def wait(self, requests) -> None:
        self.world.mpi.Request.Waitall(requests)

    def all_reduce(self, send, recv) -> None:
        self.comm.Allreduce(send, recv, op=self.sum)

    def small_sums(self, values):
        a = np.array(values, dtype=np.float64)
        self.comm.Allreduce(self.world.mpi.IN_PLACE, a, op=self.sum)
        return a

    def free(self) -> None:
        self.comm.Free()


class NCCLTransport(Transport):
    """The same on CuPy arrays: NCCL all-reduces on a stream of their own, each ordered after the
    work the current stream has queued so far (the gradients it is launched for)."""

    def __init__(self, world):
        super().__init__(world)
        self.nccl = world.nccl()
        self.cp = backend.cupy_module()
        self.stream = self.cp.cuda.Stream(non_blocking=True)

    def _after_current(self):
        self.stream.wait_event(self.cp.cuda.get_current_stream().record())

    def start(self, send, recv):
        self._after_current()
        self.nccl.all_reduce(send, recv, stream=self.stream)
        return None

    def test(self, requests) -> None:
        pass

    def wait(self, requests) -> None:
        self.cp.cuda.get_current_stream().wait_event(self.stream.record())

    def all_reduce(self, send, recv) -> None:
        self.nccl.all_reduce(send, recv)


class GradientReducer:
    """Averages ``model``'s gradients over the ranks of ``world`` after each backward.

    Use: ``attach()`` once, then around every backward ``begin()`` ... ``finish()``; ``detach()``
    when done. While attached, the modules that hold parameters report the end of their backward
    (their class is swapped for a subclass of the same name that does; ``type(m) is nn.Linear``
    is then False, ``isinstance`` holds). The first step records in which order they report;
    later steps all-reduce a bucket as soon as every module holding one of its parameters has
    reported for the last time in that order, and progress the requests at each report.
    Buckets start in one fixed order on every rank (reverse arena order), as MPI requires. A step
    whose order differs from the recording on any rank (a data-dependent path) is detected, and
    all ranks then reduce the untouched gradients again in one blocking call and record anew:
    results never depend on the overlap. Gradients are reduced into a second buffer, then
    written back divided by the number of ranks.

    ``stats``: ``steps``, ``bytes`` (gradient bytes per step), ``exposed_s`` (seconds this rank
    spent in the reducer during backward and waiting, i.e. communication not hidden),
    ``fallbacks`` (steps whose order changed).
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
        self.stats = {"steps": 0, "bytes": 0, "exposed_s": 0.0, "fallbacks": 0}
        self._transport = None
        self._signature = None
        self._recording = None
        self._active = False
        self._hooked = []

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
        params = list(self.model.parameters())
        signature = [(p, p._arena, p._offset) for p in params]
        if self._signature is not None and len(signature) == len(self._signature) and all(
                a[0] is b[0] and a[1] is b[1] and a[2] == b[2] for a, b in zip(signature, self._signature)):
            self._connect()
            return
        if not params:
            raise ValueError(f"the {type(self.model).__name__} has no parameters to reduce")
        self._signature = signature
        self._regions = _regions(params)
        first = self._regions[0].grad
        xp = backend.array_module(first)
        total = sum(r.grad.size for r in self._regions)
        recv = xp.empty(total, dtype=first.dtype)
        pos, self._buckets = 0, []
        step = max(1, self.bucket_bytes // first.dtype.itemsize)
        for r in self._regions:
            r.recv = recv[pos:pos + r.grad.size]
            pos += r.grad.size
            hi = r.grad.size
            while hi > 0:
                lo = max(0, hi - step)
                self._buckets.append(_Bucket(r, lo, hi))
                hi = lo
        self.stats["bytes"] = total * first.dtype.itemsize
        owners: dict = {}
        for m in self.model.modules():
            for p in m._parameters.values():
                if p is not None:
                    owners.setdefault(id(p), []).append(m)
        self._owners = owners
        self._recording = None
        if self._transport is not None and backend.is_cuda_array(first) != isinstance(self._transport, NCCLTransport):
            self._transport.free()
            self._transport = None
        self._connect()

    def _connect(self):
        if self._transport is None:
            on_gpu = backend.is_cuda_array(self._regions[0].grad)
            self._transport = (NCCLTransport if on_gpu else Transport)(self.world)

    def _schedule(self):
        """For each bucket, the report after which it may start: the last report of any module
        holding one of its parameters, and never before the bucket ahead of it."""
        last = {id(m): i for i, m in enumerate(self._recording)}
        never = len(self._recording)
        ready, after = [], -1
        for b in self._buckets:
            at = max(max((last.get(id(m), never) for m in self._owners.get(id(p), ())), default=never)
                     for p in b.params)
            after = max(after, at)
            ready.append(after)
        self._ready = ready

    # ------------------------------------------------------------------ per step
    def begin(self) -> None:
        """Call before the model's backward."""
        self._layout()
        self._events, self._requests, self._next = [], [], 0
        self._deviated = False
        self._active = True

    def _module_done(self, module) -> None:
        if not self._active:
            return
        t0 = time.perf_counter()
        i = len(self._events)
        self._events.append(module)
        rec = self._recording
        if rec is not None and self.overlap and not self._deviated:
            if i >= len(rec) or rec[i] is not module:
                self._deviated = True  # from here on nothing starts early; finish() checks the rest
            else:
                while self._next < len(self._buckets) and self._ready[self._next] <= i:
                    self._start(self._buckets[self._next])
                    self._next += 1
        if self._requests:
            self._transport.test(self._requests)
        self.stats["exposed_s"] += time.perf_counter() - t0

    def _start(self, b):
        r = b.region
        self._requests.append(self._transport.start(r.grad[b.lo:b.hi], r.recv[b.lo:b.hi]))

    def finish(self, extra=()):
        """Wait for every bucket, write the averaged gradients back, and return ``extra`` (numbers
        of this rank) summed over the ranks, in the same message as the check of the order."""
        t0 = time.perf_counter()
        if not self._active:
            raise RuntimeError("finish() without begin(): call begin() before the model's backward")
        self._active = False
        while self._next < len(self._buckets):
            self._start(self._buckets[self._next])
            self._next += 1
        rec = self._recording
        deviated = rec is not None and (self._deviated or len(self._events) != len(rec) or
                                        any(a is not b for a, b in zip(self._events, rec)))
        sums = self._transport.small_sums([float(deviated), *extra])
        self._transport.wait([q for q in self._requests if q is not None])
        self._requests = []
        if sums[0] > 0:  # some rank's backward took another path: reduce the intact gradients again
            for r in self._regions:
                self._transport.all_reduce(r.grad, r.recv)
            self.stats["fallbacks"] += 1
        if sums[0] > 0 or rec is None:
            self._recording = self._events
            self._schedule()
        scale = 1.0 / self.world.size
        for r in self._regions:
            backend.array_module(r.grad).multiply(r.recv, r.grad.dtype.type(scale), out=r.grad)
        self.stats["steps"] += 1
        self.stats["exposed_s"] += time.perf_counter() - t0
        return [float(v) for v in sums[1:]]
