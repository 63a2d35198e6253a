"""Gradient clipping, parameter/vector helpers, weight normalization (nn.utils.weight_norm) and
batchnorm recalibration for averaged weights (recompute_batchnorm)."""
from __future__ import annotations

import math

import numpy as np

from .. import backend, ops
from .normalization import _BatchNorm, batchnorm_usable
from .parameter import Parameter
from .weight_norm import remove_weight_norm, weight_norm  # noqa: F401  (nn.utils.weight_norm)


def _params(parameters):
    if isinstance(parameters, Parameter):
        return [parameters]
    out = list(parameters)
    for i, p in enumerate(out):
        if not isinstance(p, Parameter):
            raise TypeError(f"parameters[{i}] must be a fusetrain.nn.Parameter, got {type(p).__name__}")
    return out


def _grad_arrays(params):
    """The gradients as few contiguous arrays as possible (one per arena run)."""
    arrays, i = [], 0
    while i < len(params):
        p = params[i]
        if p._arena is None:
            arrays.append(p.grad)
            i += 1
            continue
        start, pos, j = p._offset, p._offset, i
        while j < len(params) and params[j]._arena is p._arena and params[j]._offset == pos:
            pos += params[j].size
            j += 1
        arrays.append(p._arena.grad[start:pos])
        i = j
    return arrays


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite: bool = False) -> float:
    """Scale all gradients together so their global norm is at most ``max_norm``; returns the
    norm before clipping (PyTorch's definition, coefficient min(1, max_norm/(norm + 1e-6)))."""
    params = _params(parameters)
    max_norm = float(max_norm)
    if not params:
        return 0.0
    grads = _grad_arrays(params)
    total = ops.global_norm(grads, norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"the total norm of order {norm_type} of the gradients is non-finite ({total}), "
                           "so it cannot be clipped; pass error_if_nonfinite=False to skip this check")
    coef = ops.clip_coef(total, max_norm)
    if coef != coef:  # a NaN norm: torch multiplies every gradient by NaN
        for g in grads:
            g[...] = np.nan
    elif coef < 1.0:
        ops.scale_(grads, coef)
    return total


def clip_grad_value_(parameters, clip_value) -> None:
    """Clamp every gradient element to [-clip_value, clip_value] in place."""
    params = _params(parameters)
    if params:
        ops.clamp_(_grad_arrays(params), clip_value)


def parameters_to_vector(parameters):
    """One 1-D copy of all parameter values, in order."""
    params = _params(parameters)
    if not params:
        return np.zeros(0, dtype=np.float32)
    xp = backend.array_module(params[0].data)
    return xp.concatenate([p.data.reshape(-1) for p in params])


def vector_to_parameters(vec, parameters) -> None:
    """Copy a 1-D vector (as from parameters_to_vector) back into the parameters."""
    params = _params(parameters)
    total = sum(p.size for p in params)
    if vec.ndim != 1 or vec.size != total:
        raise ValueError(f"vec must be 1-D with {total} elements, got shape {tuple(vec.shape)}")
    pos = 0
    for p in params:
        p.data[...] = vec[pos:pos + p.size].reshape(p.shape)
        pos += p.size


def recompute_batchnorm(model, x, batch_size=256):
    """Re-estimate every BatchNorm's running statistics for the model's current weights: reset
    them, then one pass over ``x`` in training mode with a cumulative average (momentum=None),
    as ``torch.optim.swa_utils.update_bn`` does. The model's mode and momenta are restored.
    No parameter changes. A last batch of one sample is left out, as in ``Trainer.fit``.

    Samples holding NaN or infinity are left out (training skips them too, with
    ``nonfinite="skip"``), and so is any batch whose statistics come out non-finite; if no batch
    is left, FloatingPointError is raised with the statistics as they were before the call.
    Returns the number of BatchNorm layers updated."""
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not bns or len(x) == 0:
        return 0
    xp = backend.array_module(x)
    finite = xp.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if not bool(finite.all()):
        x = x[finite]
    n = len(x)
    if n < 2:
        raise ValueError(f"recompute_batchnorm needs at least 2 samples of finite values (one sample has no batch "
                         f"variance), got {n}")
    n = batchnorm_usable(n, batch_size)  # as Trainer.fit: no one-sample last batch
    bufs = [b for m in bns for b in (m.running_mean, m.running_var, m.num_batches_tracked)]
    before = [b.copy() for b in bufs]
    was_training = model.training
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    used = 0
    try:
        for i in range(0, n, batch_size):
            kept = [b.copy() for b in bufs]
            model(x[i:min(n, i + batch_size)])
            if all(bool(xp.isfinite(b).all()) for b in bufs):
                used += 1
            else:  # this batch's statistics overflowed: leave it out of the average
                for b, k in zip(bufs, kept):
                    b[...] = k
        if used == 0:
            for b, k in zip(bufs, before):
                b[...] = k
            raise FloatingPointError("recompute_batchnorm: every batch gave non-finite batchnorm statistics; the "
                                     "running statistics were left as they were")
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.train(was_training)
    return len(bns)
