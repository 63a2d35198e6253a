"""The bookkeeping of forward passes that every Module shares: which pass a thread is in (a module
called twice within one keeps both calls' states), which calls are top-level (their results go to
the caller), and who owns each scratch array (Scratch)."""
from __future__ import annotations

import contextlib
import itertools
import threading
import weakref

import numpy as np

from . import inference


class _Calls(threading.local):
    """Module calls in progress in this thread. Everything one outermost call runs is one forward
    pass; backward calls are counted apart (they belong to the pass before them)."""

    def __init__(self):
        self.depth = 0           # forward calls in progress
        self.backward_depth = 0  # backward calls in progress
        self.serial = 0          # the pass in progress (or the last one)


calls = _Calls()
_passes = itertools.count(1)  # pass numbers unique across threads (next() holds the GIL)


def enter_forward() -> bool:
    """Counts a forward call (a container's forward may be called directly, as ``model.forward(x)``)
    and returns whether it is the outermost one, whose descendants' saved state belongs to an
    earlier pass. Pair with exit_forward()."""
    c = calls
    outermost = c.depth <= 1
    if c.depth == 0:
        c.serial = next(_passes)
    c.depth += 1
    return outermost


def exit_forward() -> None:
    calls.depth -= 1


@contextlib.contextmanager
def forward_pass(modules):
    """A container's forward, counted as a call (enter_forward); the outermost one first forgets
    what `modules` (the container and its descendants) saved for an earlier pass, so their
    scratch arrays serve this one."""
    if enter_forward():
        for m in modules:
            m._drop_caches()
    try:
        yield
    finally:
        exit_forward()


class Scratch:
    """A module's scratch arrays, by key (its outputs and gradients, reused from step to step).

    Ownership is explicit: an array belongs to the module until a top-level call returns it (or a
    view of it) to the caller -- hand_out() then removes it, and the caller may keep it as long as
    it likes. The module reuses its own arrays from one pass to the next, but never twice within a
    pass: a module called at several places of one forward keeps every call's arrays (its saved
    states refer to them) until the next pass starts."""

    _KEEP = 4  # arrays kept per key (shapes change at a short last batch; a module may be shared)
    _owners: dict = {}  # id(array) -> weak reference to the Scratch holding it, for hand_out

    __slots__ = ("entries", "__weakref__")

    def __init__(self):
        self.entries: dict[str, list] = {}  # key -> [[array, the pass that last took it], ...]

    def __getitem__(self, key):
        return [e[0] for e in self.entries[key]]

    def __deepcopy__(self, memo):
        return Scratch()  # a copied module starts with no scratch (it is never read before written)

    def __reduce__(self):
        return Scratch, ()

    def __del__(self):
        for entries in self.entries.values():
            for e in entries:
                Scratch._owners.pop(id(e[0]), None)

    def take(self, key, shape, dtype):
        """An array of shape and dtype under key, not yet taken in this pass."""
        serial = calls.serial
        entries = self.entries.get(key)
        if entries is None:
            entries = self.entries[key] = []
        for e in entries:
            a = e[0]
            if e[1] != serial and a.shape == shape and a.dtype == dtype:
                e[1] = serial
                return a
        a = np.empty(shape, dtype=dtype)
        if len(entries) >= self._KEEP:
            self._forget(entries[0][0])
        entries.append([a, serial])
        Scratch._owners[id(a)] = weakref.ref(self)
        return a

    def clear(self) -> None:
        self.__del__()
        self.entries.clear()

    def _forget(self, a) -> None:
        for entries in self.entries.values():
            for i, e in enumerate(entries):
                if e[0] is a:
                    del entries[i]
                    del Scratch._owners[id(a)]
                    return


def hand_out(value) -> None:
    """The result of a top-level call is the caller's from now on: its array (the scratch array a
    view was taken of, if it is a view) leaves the pool of the module that lent it."""
    base = getattr(value, "base", None)
    array = base if isinstance(base, np.ndarray) else value
    ref = Scratch._owners.get(id(array))
    owner = ref() if ref is not None else None
    if owner is not None:
        owner._forget(array)


def replaying_backward(backward):
    """Wraps a subclass's backward: after a compiled eval forward (which saved nothing), replay that
    forward through the layers' own forwards first; a backward after one that used the saved state
    takes the state of the call before it, when the module was called more than once (Module._save).
    The flag is set after the backward, so a subclass's backward calling super().backward()
    takes it once. The input gradient a top-level backward returns is the caller's (hand_out)."""
    def wrapped(self, *args, **kwargs):
        d = self.__dict__
        replay = d.pop("_eval_input", None)
        if replay is not None:
            x, modes = replay
            now = [(m, m.training) for m, _ in modes]
            for m, mode in modes:  # the modes of that forward, whatever train()/eval() did since
                object.__setattr__(m, "training", mode)
            with inference.replaying():
                enter_forward()
                try:
                    self._forward(x) if hasattr(self, "_forward") else self.forward(x)
                finally:
                    exit_forward()
                    for m, mode in now:
                        object.__setattr__(m, "training", mode)
        if d.get("_cache_used") and d.get("_cache_stack"):
            d["_cache"] = d["_cache_stack"].pop()
        d["_cache_used"] = False
        top = calls.backward_depth == 0
        calls.backward_depth += 1
        try:
            result = backward(self, *args, **kwargs)
        finally:
            calls.backward_depth -= 1
        d["_cache_used"] = True
        if top:
            hand_out(result)
        return result
    wrapped.__name__, wrapped.__qualname__, wrapped.__doc__ = backward.__name__, backward.__qualname__, backward.__doc__
    wrapped._replays = True
    return wrapped
