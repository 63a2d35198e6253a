"""Containers: Sequential (with fused Linear/BatchNorm + activation + dropout chains),
ModuleList, Residual and the Inception-style Concat (alias Parallel)."""
from __future__ import annotations

from collections import OrderedDict

from .. import backend
from . import inference
from .dropout import Dropout
from .linear import Linear
from .module import Module
from .passes import forward_pass
from .normalization import _BatchNorm
from ..ops import prepared


class _Step:
    """One unit of a Sequential's execution plan: a single module, or a fused chain headed by a
    Linear or BatchNorm whose activation/dropout run in the head's epilogue."""

    __slots__ = ("head", "act", "dropout", "span")

    def __init__(self, head, act=None, dropout=None, span=1):
        # act: (name, negative slope) of the activation the head applies (inference.act_of)
        self.head, self.act, self.dropout, self.span = head, act, dropout, span

    def forward(self, x):
        head, act, drop = self.head, self.act, self.dropout
        if act is None and drop is None:
            return head(x)
        p = drop.p if (drop is not None and drop.training) else 0.0
        if isinstance(head, Linear):
            if act is None:
                return head._forward(x, p=p)
            return head._forward(x, act=act[0], negative_slope=act[1], p=p)
        return head._forward(x, relu=True, p=p)

    def backward(self, g):
        return self.head.backward(g)


class _Children(Module):
    """The list protocol of Sequential and ModuleList over their children "0", "1", ..."""

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return self._of(items[idx])
        if not -len(items) <= idx < len(items):
            raise IndexError(f"index {idx} is out of range for a {type(self).__name__} of length {len(items)}")
        return items[idx][1]


class Sequential(inference.Compiled, _Children):
    """Runs its modules in order; ``backward`` runs their backwards in reverse.

    Chains Linear -> activation (-> Dropout), Linear -> Dropout and BatchNorm1d/2d -> ReLU
    (-> Dropout) run as one fused kernel after the GEMM / normalization, with the same results
    (and the same dropout masks) as running the layers one by one; set ``fuse = False`` to run
    them one by one.
    """

    def __init__(self, *modules):
        super().__init__()
        self.fuse = True
        if len(modules) == 1 and isinstance(modules[0], (OrderedDict, dict)):
            for name, m in modules[0].items():
                self._add(str(name), m)
        else:
            for i, m in enumerate(modules):
                self._add(str(i), m)

    def _add(self, name, m):
        if not isinstance(m, Module):
            raise TypeError(f"Sequential expects Modules, got {type(m).__name__} for entry {name}")
        self.add_module(name, m)

    def append(self, module):
        self._add(str(len(self._modules)), module)
        return self

    @staticmethod
    def _of(items):
        return Sequential(OrderedDict(items))

    def _plan(self):
        mods = list(self._modules.values())
        steps, i = [], 0
        while i < len(mods):
            m = mods[i]
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            # a head or activation whose forward/backward an instance or subclass replaced runs as itself
            head = self.fuse and inference._compilable(m)
            act = inference.act_of(nxt) if head and nxt is not None else None
            if head and isinstance(m, Linear):
                j = i + 1 + (act is not None)
                drop = mods[j] if j < len(mods) and type(mods[j]) is Dropout else None
                if act is not None or drop is not None:
                    steps.append(_Step(m, act, drop, 1 + (act is not None) + (drop is not None)))
                    i += steps[-1].span
                    continue
            if head and isinstance(m, _BatchNorm) and act is not None and act[0] == "relu":
                drop = mods[i + 2] if i + 2 < len(mods) and type(mods[i + 2]) is Dropout else None
                steps.append(_Step(m, act, drop, 2 + (drop is not None)))
                i += steps[-1].span
                continue
            steps.append(_Step(m))
            i += 1
        return steps

    def _compile_eval(self, b, src, following):
        mods = [m for m in self._modules.values() if m is not None]
        cur, i = src, 0
        while i < len(mods):
            try:
                cur, n = inference.compile_module(mods[i], b, cur, mods[i + 1:] if self.fuse else ())
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"Sequential layer {i} ({type(mods[i]).__name__}): {exc}") from exc
            i += 1 + n
        return cur, 0

    def _forward(self, x):
        cached = self.__dict__.get("_train_plan")
        if cached is None or cached[0] != inference.version():
            cached = (inference.version(), self._plan(), list(self.modules()))
            object.__setattr__(self, "_train_plan", cached)
        _, steps, mods = cached
        with forward_pass(mods):
            pos = 0
            for step in steps:
                try:
                    x = step.forward(x)
                except (ValueError, TypeError) as exc:
                    raise type(exc)(f"Sequential layer {pos} ({type(step.head).__name__}): {exc}") from exc
                pos += step.span
            self._cache = steps
        return x

    def backward(self, grad_output):
        g = grad_output
        for step in reversed(self._saved()):
            g = step.backward(g)
        return g


class ModuleList(_Children):
    """A list of modules registered as children "0", "1", ... (no forward of its own)."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList expects Modules, got {type(module).__name__}")
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    @staticmethod
    def _of(items):
        return ModuleList(m for _, m in items)


class Residual(inference.Compiled, Module):
    """y = block(x) + shortcut(x); the shortcut is the identity when None (shapes must match)."""

    def __init__(self, block, shortcut=None):
        super().__init__()
        if not isinstance(block, Module):
            raise TypeError(f"Residual block must be a Module, got {type(block).__name__}")
        if shortcut is not None and not isinstance(shortcut, Module):
            raise TypeError(f"Residual shortcut must be a Module or None, got {type(shortcut).__name__}")
        self.block = block
        if shortcut is not None:
            self.shortcut = shortcut
        else:
            self.add_module("shortcut", None)

    def _compile_eval(self, b, src, following):
        """block and shortcut, then their sum with a following activation in one pass."""
        y, _ = inference.compile_module(self.block, b, src)
        s = inference.compile_module(self.shortcut, b, src)[0] if self.shortcut is not None else src
        self._check_shapes(b.value(y), b.value(s))
        act, slope, n = "identity", 0.0, 0
        if following and inference.act_of(following[0]) is not None:
            (act, slope), n = inference.act_of(following[0]), 1
        shape = b.value(y).shape
        dst = b.buffer(shape)
        add = prepared.prepare_add(shape, act=act, negative_slope=slope, out=b.value(dst))

        def run(slots):
            add(slots[y], slots[s])
        b.step(run)
        return dst, n

    def _check_shapes(self, y, s):
        if tuple(y.shape) != tuple(s.shape):
            which = "shortcut" if self.shortcut is not None else "input (identity shortcut)"
            raise ValueError(f"Residual: block output shape {tuple(y.shape)} does not match the {which} shape "
                             f"{tuple(s.shape)}")

    def _forward(self, x):
        with forward_pass(self.modules()):
            y = self.block(x)
            s = self.shortcut(x) if self.shortcut is not None else x
            self._check_shapes(y, s)
            out = self._buffer("y", y.shape, y)
            _add(y, s, out)
            self._cache = True
        return out

    def backward(self, grad_output):
        self._saved()
        # reverse call order: a module that is both block and shortcut (or inside both) takes the
        # state of its later call first (Module._save)
        gs = self.shortcut.backward(grad_output) if self.shortcut is not None else grad_output
        gb = self.block.backward(grad_output)
        out = self._buffer("gx", gb.shape, gb)
        _add(gb, gs, out)
        return out


def _add(a, b, out):
    return backend.array_module(out).add(a, b, out=out)


class Concat(inference.Compiled, Module):
    """Inception-style block: every branch sees the same input; their outputs are concatenated
    along ``dim`` (the channel axis by default). Backward splits the gradient and sums the
    branches' input gradients."""

    def __init__(self, *branches, dim: int = 1):
        super().__init__()
        if not branches:
            raise ValueError("Concat needs at least one branch")
        for i, b in enumerate(branches):
            if not isinstance(b, Module):
                raise TypeError(f"Concat branch {i} must be a Module, got {type(b).__name__}")
            self.add_module(str(i), b)
        self.dim = int(dim)

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, idx):
        return list(self._modules.values())[idx]

    def _compile_eval(self, b, src, following):
        slots = [inference.compile_module(m, b, src)[0] for m in self._modules.values()]
        outs = [b.value(i) for i in slots]
        dim, shape = self._out_shape(outs)
        dst = b.buffer(shape)
        out = b.value(dst)

        def run(values):
            backend.array_module(out).concatenate([values[i] for i in slots], axis=dim, out=out)
        b.step(run)
        return dst, 0

    def _out_shape(self, outs):
        nd = outs[0].ndim
        dim = self.dim + nd if self.dim < 0 else self.dim
        if not 0 <= dim < nd:
            raise ValueError(f"Concat: dim {self.dim} is out of range for branch outputs with {nd} dims")
        for i, o in enumerate(outs):
            if o.ndim != nd or o.shape[:dim] + o.shape[dim + 1:] != outs[0].shape[:dim] + outs[0].shape[dim + 1:]:
                raise ValueError(f"Concat: branch {i} output shape {tuple(o.shape)} cannot be concatenated with "
                                 f"branch 0's {tuple(outs[0].shape)} along dim {self.dim}")
        shape = list(outs[0].shape)
        shape[dim] = sum(o.shape[dim] for o in outs)
        return dim, tuple(shape)

    def _forward(self, x):
        with forward_pass(self.modules()):
            outs = [b(x) for b in self._modules.values()]
            dim, shape = self._out_shape(outs)
            sizes = [o.shape[dim] for o in outs]
            out = self._buffer("y", shape, outs[0])
            backend.array_module(out).concatenate(outs, axis=dim, out=out)
            self._cache = (dim, sizes)
        return out

    def backward(self, grad_output):
        dim, sizes = self._saved()
        total, stop = None, sum(sizes)
        # reverse call order, as Residual's
        for b, n in zip(reversed(self._modules.values()), reversed(sizes)):
            idx = (slice(None),) * dim + (slice(stop - n, stop),)
            g = b.backward(grad_output[idx])
            total = g.copy() if total is None else total.__iadd__(g)
            stop -= n
        return total

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


Parallel = Concat
