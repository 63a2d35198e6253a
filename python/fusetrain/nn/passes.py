"""The bookkeeping of forward passes that every Module shares: which pass a thread is in (a module
called twice within one keeps both calls' states), which calls are top-level (their results go to
the caller), and who owns each scratch array (Scratch)."""
from __future__ import annotations

import contextlib
import itertools
import threading
import weakref

import numpy as np


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
    _owners = weakref.WeakValueDictionary()  # id(array) -> the Scratch holding it, for hand_out

    __slots__ = ("arrays", "used", "__weakref__")

    def __init__(self):
        self.arrays: dict[str, list] = {}
        self.used: dict[int, int] = {}  # id(array) -> the pass that last took it

    def __getitem__(self, key):
        return self.arrays[key]

    def __deepcopy__(self, memo):
        return Scratch()  # a copied module starts with no scratch (it is never read before written)

    def __reduce__(self):
        return Scratch, ()

    def take(self, key, shape, dtype):
        """An array of shape and dtype under key, not yet taken in this pass."""
        serial = calls.serial
        arrays = self.arrays.setdefault(key, [])
        for a in arrays:
            if self.used[id(a)] != serial and a.shape == shape and a.dtype == dtype:
                self.used[id(a)] = serial
                return a
        a = np.empty(shape, dtype=dtype)
        if len(arrays) >= self._KEEP:
            self._forget(arrays[0])
        arrays.append(a)
        self.used[id(a)] = serial
        Scratch._owners[id(a)] = self
        return a

    def clear(self) -> None:
        for arrays in list(self.arrays.values()):
            for a in list(arrays):
                self._forget(a)
        self.arrays.clear()

    def _forget(self, a) -> None:
        for arrays in self.arrays.values():
            for i, b in enumerate(arrays):
                if b is a:
                    del arrays[i]
                    del self.used[id(a)]
                    Scratch._owners.pop(id(a), None)
                    return


def hand_out(value) -> None:
    """The result of a top-level call is the caller's from now on: its array (the scratch array a
    view was taken of, if it is a view) leaves the pool of the module that lent it."""
    base = getattr(value, "base", None)
    array = base if isinstance(base, np.ndarray) else value
    owner = Scratch._owners.get(id(array))
    if owner is not None:
        owner._forget(array)
