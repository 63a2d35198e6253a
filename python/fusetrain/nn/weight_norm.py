"""Weight normalization (Salimans & Kingma): weight = g * v / ||v||, the norm taken over every
axis except ``dim``. Like ``torch.nn.utils.weight_norm`` it re-parametrizes a module in place:
the module's ``weight`` parameter is replaced by ``weight_g`` and ``weight_v`` (same state_dict
keys as PyTorch), ``weight`` is recomputed before each forward, and backward maps its gradient
onto g and v."""
from __future__ import annotations

from .. import backend
from .module import Module
from .parameter import Parameter


def _axes(ndim, dim):
    if dim is None:
        return tuple(range(ndim))
    return tuple(a for a in range(ndim) if a != dim)


def _norm(v, dim):
    xp = backend.array_module(v)
    axes = _axes(v.ndim, dim)
    if dim is None:
        return xp.sqrt(xp.sum(v * v))
    return xp.sqrt(xp.sum(v * v, axis=axes, keepdims=True))


class _WeightNormHook:
    __slots__ = ("name", "dim", "module")

    def __init__(self, module, name, dim):
        self.module, self.name, self.dim = module, name, dim

    def compute(self):
        m = self.module
        g, v = m._parameters[self.name + "_g"].data, m._parameters[self.name + "_v"].data
        m.__dict__[self.name].data[...] = g * (v / _norm(v, self.dim))

    def accumulate(self):
        """Map d(weight) (accumulated in the holder's grad by the module's backward) onto g, v."""
        m = self.module
        holder = m.__dict__[self.name]
        pg, pv = m._parameters[self.name + "_g"], m._parameters[self.name + "_v"]
        g, v, dw = pg.data, pv.data, holder.grad
        xp = backend.array_module(v)
        n = _norm(v, self.dim)
        if self.dim is None:
            s = xp.sum(dw * v)
        else:
            s = xp.sum(dw * v, axis=_axes(v.ndim, self.dim), keepdims=True)
        pg.grad += (s / n).astype(g.dtype).reshape(g.shape)
        pv.grad += ((g / n) * dw - (g * s / (n * n * n)) * v).astype(v.dtype)
        holder.grad.fill(0)


def weight_norm(module, name: str = "weight", dim=0):
    """Re-parametrize ``module.<name>`` as ``<name>_g * <name>_v / ||<name>_v||`` (norm over all
    axes but ``dim``; ``dim=None`` for one norm over the whole array). Returns the module."""
    if not isinstance(module, Module):
        raise TypeError(f"weight_norm expects a Module, got {type(module).__name__}")
    w = module._parameters.get(name)
    if w is None:
        raise ValueError(f"{type(module).__name__} has no parameter {name!r} to normalize")
    if "_weight_norm" in module.__dict__:
        raise RuntimeError(f"weight_norm was already applied to {type(module).__name__}.{name}")
    if dim is not None:
        dim = int(dim) + (w.ndim if int(dim) < 0 else 0)
        if not 0 <= dim < w.ndim:
            raise ValueError(f"dim {dim} is out of range for {name} of shape {tuple(w.shape)}")
    v = w.data
    g = _norm(v, dim)
    del module._parameters[name]
    module.register_parameter(name + "_g", Parameter(g, dtype=v.dtype))
    module.register_parameter(name + "_v", Parameter(v, dtype=v.dtype))
    object.__setattr__(module, name, Parameter(v, dtype=v.dtype))  # computed, not trained: unregistered
    hook = _WeightNormHook(module, name, dim)
    cls = type(module)

    def forward(*args, **kwargs):
        hook.compute()
        return cls.forward(module, *args, **kwargs)

    def backward(grad_output):
        gx = cls.backward(module, grad_output)
        hook.accumulate()
        return gx

    object.__setattr__(module, "_weight_norm", hook)
    object.__setattr__(module, "forward", forward)
    object.__setattr__(module, "backward", backward)
    hook.compute()
    return module


def remove_weight_norm(module, name: str = "weight"):
    """Undo weight_norm: ``<name>`` becomes an ordinary parameter holding g * v / ||v||."""
    hook = module.__dict__.get("_weight_norm")
    if hook is None or hook.name != name:
        raise ValueError(f"weight_norm of {name!r} not found in {type(module).__name__}")
    hook.compute()
    w = module.__dict__[name].data
    for attr in ("_weight_norm", "forward", "backward", name):
        del module.__dict__[attr]
    del module._parameters[name + "_g"]
    del module._parameters[name + "_v"]
    module.register_parameter(name, Parameter(w, dtype=w.dtype))
    return module
