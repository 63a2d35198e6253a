"""Optimizer base class: param groups laid out as contiguous segments of a flat arena, state
buffers of the same layout, optional clip-by-global-norm folded into the fused update."""
from __future__ import annotations

import math

import numpy as np

from .. import backend, ops
from ..nn.arena import Arena, segment
from ..nn.parameter import Parameter
from ..ops import _check


class _Segment:
    __slots__ = ("data", "grad", "signature")

    def __init__(self, params, data, grad):
        self.data, self.grad = data, grad
        self.signature = [(p, p._arena, p._offset) for p in params]

    def valid(self) -> bool:
        return all(p._arena is a and p._offset == o for p, a, o in self.signature)


class Optimizer:
    """Base class. Subclasses define ``_validate(group)`` and ``_update(group, data, grad, state, grad_scale)``.

    ``params``: an iterable of Parameters or of dicts ``{"params": [...], **hyper_parameters}``.
    Each group's parameters are (re)packed so they form one contiguous segment of an arena
    (reusing the model's arena when they already do); the update is one fused call per group.
    ``max_grad_norm``: when set, ``step()`` computes the global L2 norm of all groups' gradients,
    stores it in ``last_grad_norm`` and scales the gradients inside the update by
    min(1, max_norm / (norm + 1e-6)), exactly like ``clip_grad_norm_`` followed by ``step()``.
    """

    def __init__(self, params, defaults: dict, max_grad_norm=None):
        if isinstance(params, (Parameter, np.ndarray)) or backend.is_cuda_array(params):
            raise TypeError("params must be an iterable of Parameters or of dicts (param groups), got a single "
                            f"{type(params).__name__}; wrap it in a list")
        self.defaults = dict(defaults)
        self.max_grad_norm = None if max_grad_norm is None else _check.number(max_grad_norm, "max_grad_norm",
                                                                           lo=0.0, lo_open=True)
        self.last_grad_norm = None
        self.param_groups: list[dict] = []
        self.state: list[dict] = []
        self._segments: list[_Segment] = []
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self._append_group(g)
        self._layout()

    # ---------------------------------------------------------------- groups and layout
    def _append_group(self, group):
        if not isinstance(group, dict):
            raise TypeError(f"param groups must be dicts, got {type(group).__name__}")
        group = dict(group)
        params = group.get("params")
        if params is None:
            raise ValueError("a param group needs a 'params' entry")
        params = [params] if isinstance(params, Parameter) else list(params)
        if not params:
            raise ValueError("a param group got an empty parameter list")
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise TypeError(f"optimizers can only optimize fusetrain.nn.Parameter objects, got "
                                f"{type(p).__name__} at params[{i}]")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("a param group contains the same parameter more than once")
        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in existing for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        group["params"] = params
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        self._validate(group)
        self.param_groups.append(group)
        self.state.append({})

    def add_param_group(self, param_group: dict) -> None:
        """Add a group (its own hyper-parameters, the defaults for the rest)."""
        self._append_group(param_group)
        try:
            self._layout()
        except BaseException:  # refused (e.g. another dtype): the optimizer stays as it was
            self.param_groups.pop()
            self.state.pop()
            raise

    def _layout(self):
        groups = [g["params"] for g in self.param_groups]
        flat = [p for ps in groups for p in ps]
        if segment(flat) is None and not all(segment(ps) is not None for ps in groups):
            Arena(flat)
        self._segments = []
        for ps in groups:
            arena, start, stop = segment(ps)
            self._segments.append(_Segment(ps, arena.data[start:stop], arena.grad[start:stop]))

    def _ensure_layout(self):
        # Someone (model.flatten_parameters, another optimizer, model.to) may have re-packed the
        # parameters since; the state buffers keep their meaning since group order is unchanged.
        if not all(s.valid() for s in self._segments):
            self._layout()

    def check_model(self, model) -> None:
        """Raises ValueError unless every parameter this optimizer updates is one of ``model``'s
        (by identity): one built on another model's parameters, or on a model since replaced,
        would step parameters that model's backward never gives a gradient, and the model would
        not learn. Optimizing only some of the model's parameters is fine."""
        own = {id(p) for p in model.parameters()}
        foreign = [(i, j, p) for i, g in enumerate(self.param_groups) for j, p in enumerate(g["params"])
                   if id(p) not in own]
        if foreign:
            i, j, p = foreign[0]
            raise ValueError(
                f"the optimizer updates {len(foreign)} parameter(s) that are not parameters of the "
                f"{type(model).__name__} (the first: param_groups[{i}]['params'][{j}], shape {tuple(p.shape)}); "
                "build the optimizer on this model's parameters, e.g. SGD(model.parameters(), ...)")

    # ---------------------------------------------------------------- stepping
    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zero every group's gradients (one fill per group; ``set_to_none`` is accepted for
        PyTorch compatibility, gradients are always arrays)."""
        self._ensure_layout()
        for s in self._segments:
            s.grad.fill(0)

    def grad_norm(self, norm_type=2.0) -> float:
        """The global norm of all groups' gradients (one deterministic reduction)."""
        self._ensure_layout()
        return ops.global_norm([s.grad for s in self._segments], norm_type)

    def _clip_scale(self, norm=None) -> float:
        if self.max_grad_norm is None:
            return 1.0
        if norm is None:
            norm = self.grad_norm()
        self.last_grad_norm = norm
        coef = ops.clip_coef(norm, self.max_grad_norm)
        return coef if math.isfinite(coef) else 1.0

    def step(self, closure=None, *, grad_norm=None):
        """One update of every parameter group; returns closure() when given.

        ``grad_norm``: the global L2 norm of the current gradients (``self.grad_norm()``) when the
        caller has already computed it, e.g. for a non-finite check; clipping then reuses it
        instead of reading every gradient again. It must be the norm of these gradients."""
        loss = closure() if closure is not None else None
        self._ensure_layout()
        scale = self._clip_scale(None if grad_norm is None else float(grad_norm))
        for group, seg, state in zip(self.param_groups, self._segments, self.state):
            self._update(group, seg.data, seg.grad, state, scale)
        return loss

    def _validate(self, group):
        raise NotImplementedError

    def _update(self, group, data, grad, state, grad_scale):
        raise NotImplementedError

    def _init_state(self, state, data, *names, fill=0.0):
        """A group's step count and its state buffers `names` (data's size, filled with `fill`),
        those it lacks created: all at its first step, one a mode needs when it is switched on."""
        state.setdefault("step", 0)
        for name in names:
            if name not in state:
                state[name] = self._zeros(data, fill)

    @staticmethod
    def _zeros(like, fill=0.0):
        a = backend.array_module(like).empty_like(like)
        a.fill(fill)
        return a

    # ---------------------------------------------------------------- state dict
    def state_dict(self) -> dict:
        """{"state": {group index: {name: array copy or int}}, "param_groups": [hyper-parameters
        with "params" as indices]}: NumPy arrays and plain scalars only."""
        groups, start = [], 0
        for g in self.param_groups:
            entry = {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items() if k != "params"}
            entry["params"] = list(range(start, start + len(g["params"])))
            start += len(g["params"])
            groups.append(entry)
        state = {}
        for i, st in enumerate(self.state):
            if st:
                state[i] = {k: (v.get() if backend.is_cuda_array(v) else np.array(v, copy=True))
                            if hasattr(v, "shape") else v for k, v in st.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyper-parameters and state saved by ``state_dict`` (same group structure).
        Everything is checked first (hyper-parameters as the constructor checks them, state
        arrays' sizes, step counts); on a problem ValueError/TypeError names the field and
        nothing has changed."""
        hyper, states = self.checked_state_dict(state_dict)
        for g, new in zip(self.param_groups, hyper):
            g.update(new)
        self.state = states

    def checked_state_dict(self, state_dict) -> tuple:
        """(hyper-parameters of each group, state of each group) that ``load_state_dict`` would
        set from ``state_dict``, validated, without changing this optimizer."""
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict or "state" not in state_dict:
            raise ValueError("optimizer state_dict must be a dict with 'state' and 'param_groups' entries")
        groups, saved_states = state_dict["param_groups"], state_dict["state"]
        if not isinstance(groups, (list, tuple)):
            raise TypeError(f"param_groups must be a list, got {type(groups).__name__}")
        if not isinstance(saved_states, dict):
            raise TypeError(f"state must be a dict of group index to state, got {type(saved_states).__name__}")
        if len(groups) != len(self.param_groups):
            raise ValueError(f"loaded state_dict has {len(groups)} parameter groups, this optimizer has "
                             f"{len(self.param_groups)}")
        hyper = []
        for i, (saved, g) in enumerate(zip(groups, self.param_groups)):
            if not isinstance(saved, dict) or not isinstance(saved.get("params"), (list, tuple)):
                raise TypeError(f"param_groups[{i}] must be a dict with a 'params' list, got {saved!r}")
            if len(saved["params"]) != len(g["params"]):
                raise ValueError(f"param group {i}: loaded state_dict has {len(saved['params'])} parameters, "
                                 f"this optimizer has {len(g['params'])}")
            candidate = dict(g)
            candidate.update({k: v for k, v in saved.items() if k != "params"})
            try:
                self._validate(candidate)
                if "initial_lr" in candidate:
                    candidate["initial_lr"] = _check.number(candidate["initial_lr"], "initial_lr", lo=0.0)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"param_groups[{i}]: {exc}") from None
            hyper.append({k: candidate[k] for k in saved if k != "params"})
        self._ensure_layout()
        states = []
        for i, seg in enumerate(self._segments):
            saved = saved_states.get(i, saved_states.get(str(i), {}))
            if not isinstance(saved, dict):
                raise TypeError(f"state[{i}] must be a dict, got {type(saved).__name__}")
            st = {}
            for k, v in saved.items():
                where = f"state[{i}][{k!r}]"
                if hasattr(v, "shape") and np.ndim(v) > 0:
                    if np.asarray(v).dtype.kind not in "fiu":
                        raise TypeError(f"{where} must hold real numbers, got dtype {np.asarray(v).dtype}")
                    if int(np.size(v)) != seg.data.size:
                        raise ValueError(f"param group {i}: state {k!r} has {np.size(v)} elements, expected "
                                         f"{seg.data.size}")
                    arr = self._zeros(seg.data)
                    arr[...] = backend.cupy_module().asarray(v) if backend.is_cuda_array(arr) else np.asarray(v)
                    st[k] = arr
                    continue
                v = v.item() if hasattr(v, "item") else v
                # the only scalar state: how many steps the group took (Adagrad's lr decay and
                # the bias corrections of Adam depend on it)
                if k != "step":
                    raise ValueError(f"{where} must be an array of the group's {seg.data.size} values, got {v!r}")
                st[k] = _check.integer(v, where, lo=0)
            states.append(st)
        return hyper, states

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        if self.max_grad_norm is not None:
            lines.append(f"max_grad_norm: {self.max_grad_norm}")
        lines.append(")")
        return "\n".join(lines)
