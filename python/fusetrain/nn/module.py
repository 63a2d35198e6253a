"""Module: the base class of layers and containers, with PyTorch's registration, traversal,
state_dict and train/eval semantics, plus an explicit ``backward(grad_output) -> grad_input``.

Gradient convention: ``backward`` ACCUMULATES (+=) into each parameter's ``.grad`` and returns
the gradient with respect to the input (a fresh array the caller may keep).

One instance may be called at several places of one forward pass (weight sharing, as in
``Sequential(lin, ReLU(), lin)``): each call keeps what its backward needs, and the backwards,
run in reverse order as for any network, each use their own call's state.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from . import inference, state
from .arena import Arena
from .parameter import Parameter
from .passes import Scratch, _passes, calls, hand_out, replaying_backward

_MISSING = object()


class Module:
    """Base class for all layers. Subclasses implement ``forward(x)`` and ``backward(grad)``.

    In eval mode our layers and containers run a compiled forward that keeps nothing for backward
    (fusetrain.nn.inference). Gradients still work in eval mode, as in PyTorch: a backward after
    such a forward first replays it through the layers' own forwards (one extra forward pass), so
    the input given to that forward must not be modified in between.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        bw = cls.__dict__.get("backward")
        if bw is not None and not getattr(bw, "_replays", False):
            cls.backward = replaying_backward(bw)

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_scratch", Scratch())
        object.__setattr__(self, "training", True)

    # ---------------------------------------------------------------- registration
    def _check_init(self):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                                 "before assigning parameters, buffers or submodules")

    def __setattr__(self, name, value):
        if name == "_cache":
            self._save(value)
            return
        d = self.__dict__
        if not name.startswith("_") and self._current(name) is not value:
            inference.bump()  # a compiled plan may depend on it (an in-place `buf += 1` keeps it)
        if isinstance(value, (Parameter, Module)):
            self._register("_parameters" if isinstance(value, Parameter) else "_modules", name, value, bump=False)
        elif "_parameters" in d and name in self._parameters:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} to parameter {name!r} "
                                "(expected a fusetrain.nn.Parameter or None)")
            self._parameters[name] = None
        elif "_modules" in d and name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} to submodule {name!r} "
                                "(expected a fusetrain.nn.Module or None)")
            self._modules[name] = None
        elif "_buffers" in d and name in self._buffers:
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def _current(self, name):
        """What attribute `name` holds now (a parameter, buffer, submodule or plain value), or a
        marker object when it has none."""
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        return d.get(name, _MISSING)

    def _discard(self, name):
        for store in (self._parameters, self._buffers, self._modules):
            store.pop(name, None)
        self.__dict__.pop(name, None)
        self._non_persistent.discard(name)

    def __getattr__(self, name):
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        inference.bump()
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                self._non_persistent.discard(name)
                return
        object.__delattr__(self, name)

    def _register(self, store: str, name: str, value, kind=None, bump=True) -> None:
        """value (of type `kind`, or None) under `name` in one of the three stores, replacing
        whatever the name held; bump: invalidate the compiled plans."""
        if kind is not None and value is not None and not isinstance(value, kind):
            method = "register_parameter" if kind is Parameter else "add_module"
            raise TypeError(f"{method} expects a {kind.__name__} or None for {name!r}, got {type(value).__name__}")
        self._check_init()
        self._discard(name)
        self.__dict__[store][name] = value
        if bump:
            inference.bump()

    def _check_name(self, store: str, name) -> None:
        """torch's rules for register_*/add_module: a str without ".", not empty, and not an
        attribute other than one of this kind (re-registering a buffer replaces it)."""
        if not isinstance(name, str):
            raise TypeError(f"the name must be a str, got {type(name).__name__}")
        if "." in name:
            raise KeyError(f'a name must not contain ".", got "{name}"')
        if not name:
            raise KeyError("a name must not be empty")
        self._check_init()
        if hasattr(self, name) and name not in self.__dict__[store]:
            raise KeyError(f"attribute '{name}' already exists")

    def register_parameter(self, name: str, param) -> None:
        """Register ``param`` (a Parameter or None, e.g. an absent bias) under ``name``."""
        self._check_name("_parameters", name)
        self._register("_parameters", name, param, Parameter)

    def register_buffer(self, name: str, array, persistent: bool = True) -> None:
        """Register a non-trainable array (e.g. running_mean) saved in state_dict when persistent."""
        self._check_name("_buffers", name)
        self._register("_buffers", name, array)
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name: str, module) -> None:
        self._check_name("_modules", name)
        self._register("_modules", name, module, Module)

    # ---------------------------------------------------------------- traversal
    def named_modules(self, prefix: str = "", memo=None):
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(prefix + ("." if prefix else "") + name, memo)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()  # a child held under two names is listed once, as torch does
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        seen = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mp, m in mods:
            for name, p in m._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (mp + "." if mp else "") + name, p

    def parameters(self, recurse: bool = True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True):
        seen = set()  # one array registered in several modules is listed once, as torch does
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mp, m in mods:
            for name, b in m._buffers.items():
                if b is not None and id(b) not in seen:
                    seen.add(id(b))
                    yield (mp + "." if mp else "") + name, b

    def buffers(self, recurse: bool = True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # ---------------------------------------------------------------- forward / backward
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward()")

    def backward(self, grad_output):
        raise NotImplementedError(f"{type(self).__name__} does not implement backward()")

    def __call__(self, *args, **kwargs):
        c = calls
        top = c.depth == 0
        if top:
            c.serial = next(_passes)
        c.depth += 1
        try:
            out = self.forward(*args, **kwargs)
        finally:
            c.depth -= 1
        if top:
            hand_out(out)
        return out

    def _save(self, value) -> None:
        """``self._cache = value``: what this call's backward needs. A second call within one
        forward pass (the module shared between places) keeps the earlier call's state on a
        stack; each backward after the first takes the state of the call before (see
        _replaying_backward), so backwards in reverse call order each get their own."""
        d = self.__dict__
        c = calls
        if c.depth and "_cache" in d and d.get("_cache_serial") == c.serial:
            stack = d.get("_cache_stack")
            if stack is None:
                stack = d["_cache_stack"] = []
            stack.append(d["_cache"])
        else:
            d.pop("_cache_stack", None)
            d["_cache_serial"] = c.serial
        d["_cache"] = value
        d["_cache_used"] = False

    def _saved(self):
        """What the forward saved for this backward (``self._cache``); raises if it saved nothing."""
        cache = self.__dict__.get("_cache")
        if cache is None:
            who = type(self).__name__ if self._modules else repr(self)
            raise RuntimeError(f"{who}: backward() called before forward()")
        return cache

    def _drop_caches(self) -> None:
        """Forget what the last forward saved for backward (containers call this on all their
        descendants before a new forward, so scratch buffers become reusable)."""
        d = self.__dict__
        for key in ("_cache", "_cache_stack", "_cache_used", "_eval_input"):
            d.pop(key, None)

    def _buffer(self, key, shape, like, dtype=None):
        """A scratch array of ``shape`` on like's device, of like's dtype unless ``dtype`` says,
        owned by this module (see passes.Scratch): reused in later passes, never handed out
        twice in one, and the caller's for good once a top-level call returns it."""
        dtype = like.dtype if dtype is None else np.dtype(dtype)
        if backend.is_cuda_array(like):  # CuPy's memory pool makes allocation cheap
            return backend.cupy_module().empty(tuple(shape), dtype=dtype)
        return self._scratch.take(key, tuple(shape), dtype)

    # ---------------------------------------------------------------- modes and grads
    def train(self, mode: bool = True):
        if not isinstance(mode, bool):
            raise TypeError(f"train(mode) expects a bool, got {type(mode).__name__}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        inference.bump()
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zero every parameter's gradient: one fill per arena run, one per loose parameter.
        (``set_to_none`` is accepted for PyTorch compatibility; gradients are always arrays.)"""
        params = list(self.parameters())
        i = 0
        while i < len(params):
            p = params[i]
            arena = p._arena
            if arena is None:
                p._grad.fill(0)
                i += 1
                continue
            start, pos, j = p._offset, p._offset, i
            while j < len(params) and params[j]._arena is arena and params[j]._offset == pos:
                pos += params[j].size
                j += 1
            arena.grad[start:pos].fill(0)
            i = j

    def flatten_parameters(self):
        """Move all parameters into one flat arena (values and grads contiguous); returns it.
        Optimizers reuse it when their param groups are consecutive runs of it."""
        params = list(self.parameters())
        if not params:
            return None
        return Arena(params)

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # ---------------------------------------------------------------- devices, dtypes and state
    def to(self, device=None, dtype=None):
        """Move parameters and buffers to ``"cpu"`` or ``"cuda"`` and/or cast floating ones to
        ``dtype``. Parameters are re-packed into one arena; build optimizers afterwards."""
        return state.move(self, device, dtype)

    def double(self):
        return self.to(dtype=np.float64)

    def float(self):
        return self.to(dtype=np.float32)

    def state_dict(self, prefix: str = "") -> dict:
        """Copies of every parameter and persistent buffer as NumPy arrays, under PyTorch's keys
        (own parameters, own buffers, then each child under ``"<child name>."``)."""
        return state.state_dict(self, prefix)

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy values from ``state_dict`` (NumPy arrays, or torch tensors) into this module's
        parameters and buffers in place. Raises RuntimeError listing missing/unexpected keys
        (when strict) and shape mismatches; returns (missing_keys, unexpected_keys)."""
        return state.load_state_dict(self, state_dict, strict)

    # ---------------------------------------------------------------- repr
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = []
        for name, m in self._modules.items():
            child = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {child}")
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"
