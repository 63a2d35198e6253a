"""The eval-mode forward ("inference path"): a model in eval mode is compiled, once per input shape,
into a flat list of kernel calls that save nothing for backward.

What compiling buys over running the layers' own forwards:
- fusion: a convolution or Linear followed by an eval BatchNorm and an activation is one kernel call
  (the bias, the batchnorm folded into a per-channel scale and shift from its running statistics,
  and the activation are the convolution's epilogue); a residual sum and the ReLU after it are one;
- no per-call work in Python beyond one call per fused step: arguments are checked and buffers
  allocated when the plan is built, intermediate buffers are reused on every call;
- nothing is kept for a backward pass.

The first call with a new input shape builds the plan by tracing: each module appends its steps
and runs them at once, so the next module sees real values. Modules without a compile rule (a
user's own Module subclass, a layer wrapped by weight_norm) run their own forward as one step.
A plan is keyed by input shape and dtype, the calling thread and a structure version that any
change to a module (a new parameter, submodule or attribute, train()/eval(), a re-packed
parameter arena) bumps, so a stale plan is never run. Parameters and running statistics are read
when each call runs, so weight updates and load_state_dict need no recompilation.
"""
from __future__ import annotations

import threading

import numpy as np

from .. import backend

_version = 0
_MAX_PLANS = 4  # input shapes remembered per module (e.g. the full batches and a short last one)

def bump() -> None:
    """Invalidate every compiled plan (called on any structural change to any module)."""
    global _version
    _version += 1


def version() -> int:
    """The structure version: changes whenever any module's structure or mode changes."""
    return _version


def compiles(forward):
    """Marks a forward method whose class has a compile rule (``_compile_eval``)."""
    forward._compiles = True
    return forward


class Compiled:
    """Mixin of the layers and containers with a compile rule (``_compile_eval``): in eval mode, on
    an eligible input, forward runs the compiled plan; otherwise the module's own ``_forward``."""

    @compiles
    def forward(self, x):
        # a module whose forward a subclass or instance replaced is run, in a plan, through that
        # forward, which may call this one: it must not enter a plan again
        if not self.training and eligible(x) and _compilable(self):
            return run(self, x)
        return self._forward(x)


_local = threading.local()


def eligible(x) -> bool:
    """Inputs the compiled path runs on: float32 host arrays, with the fused backend, outside a
    replay (see Module.backward)."""
    return (type(x) is np.ndarray and x.dtype == np.float32 and backend.get_backend() == "fused"
            and not getattr(_local, "replaying", False))


class replaying:
    """Within it, eval-mode forwards run the layers' own forwards, which keep what backward needs:
    a backward after a compiled eval forward first replays that forward this way."""

    def __enter__(self):
        self.previous = getattr(_local, "replaying", False)
        _local.replaying = True

    def __exit__(self, *exc):
        _local.replaying = self.previous


def _compilable(m) -> bool:
    # The class's own forward is a compiled one (not overridden below it) and no instance-level
    # forward or backward replaces the class's (as weight_norm does): then a fused kernel may run
    # in its place, in eval plans and in Sequential's fused training chains alike.
    d = m.__dict__
    return getattr(type(m).forward, "_compiles", False) and "forward" not in d and "backward" not in d


class Builder:
    """Collects the steps of a plan while tracing the first call. Slot 0 is the plan's input."""

    def __init__(self, x):
        self.slots = [x]
        self.owned = [False]  # slot holds a buffer that belongs to the plan
        self.steps = []

    def value(self, slot):
        return self.slots[slot]

    def buffer(self, shape, dtype=np.float32) -> int:
        """A new slot holding a plan-owned, reused buffer."""
        self.slots.append(np.empty(tuple(shape), dtype))
        self.owned.append(True)
        return len(self.slots) - 1

    def alias(self, value) -> int:
        """A new slot set by a step at run time (a view, or a fallback module's output)."""
        self.slots.append(value)
        self.owned.append(False)
        return len(self.slots) - 1

    def step(self, fn) -> None:
        """Append fn(slots) to the plan and run it now (tracing)."""
        self.steps.append(fn)
        fn(self.slots)

    def scratch(self, n, dtype=np.float32):
        """A plan-owned scratch array no slot refers to."""
        return np.empty(int(n), dtype)


def compile_module(m, b: Builder, src: int, following=()) -> tuple[int, int]:
    """Appends module m's steps reading slot src; returns (output slot, how many of the modules in
    `following` (the ones after m in its Sequential) m absorbed into its own steps)."""
    if _compilable(m):
        out = m._compile_eval(b, src, following)
        if out is not None:
            return out
    return fallback(m, b, src), 0


def fallback(m, b: Builder, src: int) -> int:
    """m run as one step through its own forward (its eval-mode semantics, without fusion)."""
    fwd = m._forward if _compilable(m) else m.forward
    dst = b.alias(None)

    def run(slots):
        slots[dst] = fwd(slots[src])
    b.step(run)
    return dst


class Plan:
    __slots__ = ("slots", "steps", "out", "owned_out")

    def __init__(self, b: Builder, out: int):
        self.slots, self.steps, self.out, self.owned_out = b.slots, b.steps, out, b.owned[out]
        self.slots[0] = None

    def __call__(self, x):
        slots = self.slots
        slots[0] = x
        for f in self.steps:
            f(slots)
        y = slots[self.out]
        slots[0] = None
        # The caller gets its own array: the plan reuses its buffers on the next call.
        return y.copy() if self.owned_out else y


def run(m, x):
    """m(x) in eval mode through m's compiled plan for x's shape (built on first use)."""
    plans = m.__dict__.get("_plans")
    if plans is None:
        plans = {}
        object.__setattr__(m, "_plans", plans)
    subtree = m.__dict__.get("_subtree")
    if subtree is None or subtree[0] != _version:  # modes change only with the version (train/eval bump it)
        subtree = (_version, [(sub, sub.training) for sub in m.modules()])
        object.__setattr__(m, "_subtree", subtree)
    modes = subtree[1]
    for sub, _ in modes:  # what a training forward left for backward is stale now
        sub._drop_caches()
    # for a backward, which replays this forward in these modes (passes.replaying_backward)
    object.__setattr__(m, "_eval_input", (x, modes))
    key = (x.shape, threading.get_ident(), _version)
    plan = plans.get(key)
    if plan is not None:
        return plan(x)
    b = Builder(x)
    out, _ = compile_module(m, b, 0)
    y = b.slots[out]
    result = y.copy() if b.owned[out] else y
    if len(plans) >= _MAX_PLANS:
        plans.pop(next(iter(plans)))
    plans[key] = Plan(b, out)
    return result


# What a module following a layer offers to that layer's kernel, when its forward is its class's
# compiled one (so skipping it loses nothing): an activation names itself (_epilogue_act), an eval
# batchnorm of inputs with these dimensions folds into it (_bn_ndims), an eval dropout is the
# identity (_eval_identity).

def act_of(m):
    """(name, negative slope) of an activation a kernel can apply in its epilogue, or None."""
    get = getattr(m, "_epilogue_act", None)
    return get() if get is not None and _compilable(m) else None


def absorb_epilogue(following, channels, bn_ndim=None):
    """How a layer with `channels` outputs of `bn_ndim` dimensions can absorb the modules after it: an
    eval BatchNorm with running statistics (not when bn_ndim is None), then an activation, then eval
    Dropouts. Returns (bn module or None, (act name, negative slope), count absorbed)."""
    i, bn = 0, None
    f = following[0] if following else None
    if (f is not None and bn_ndim in getattr(f, "_bn_ndims", ()) and _compilable(f) and not f.training
            and f.track_running_stats and f.num_features == channels and f.running_mean.dtype == np.float32):
        bn = f
        i += 1
    act = ("identity", 0.0)
    a = act_of(following[i]) if i < len(following) else None
    if a is not None:
        act = a
        i += 1
    while (i < len(following) and getattr(following[i], "_eval_identity", False) and _compilable(following[i])
           and not following[i].training):
        i += 1
    return bn, act, i


def bn_dict(bn):
    """The eval batchnorm of a prepared op (fusetrain.ops.prepared) for module bn, or None."""
    if bn is None:
        return None
    return dict(mean=bn.running_mean, var=bn.running_var, weight=bn.weight.data if bn.affine else None,
                bias=bn.bias.data if bn.affine else None, eps=float(bn.eps))


def float32(*arrays) -> bool:
    """All given arrays (None skipped) are float32 host arrays: the kernels' storage."""
    return all(a is None or (type(a) is np.ndarray and a.dtype == np.float32) for a in arrays)


def view(b: Builder, src: int, shape) -> int:
    """A slot holding slot src reshaped: fixed when src is a plan buffer, else reshaped per call."""
    shape = tuple(shape)
    if b.owned[src]:
        b.slots.append(b.slots[src].reshape(shape))
        b.owned.append(True)
        return len(b.slots) - 1
    dst = b.alias(None)

    def run(slots):
        slots[dst] = slots[src].reshape(shape)
    b.step(run)
    return dst


def kernel_step(b: Builder, src: int, shape, make) -> int:
    """A step running a prepared op: make(out) returns run(x) writing a new plan buffer of shape."""
    dst = b.buffer(shape)
    fn = make(b.slots[dst])

    def run(slots):
        fn(slots[src])
    b.step(run)
    return dst


__all__ = ["Builder", "Compiled", "Plan", "bump", "compile_module", "compiles", "eligible", "run"]
