"""Fused optimizer updates over contiguous float32 buffers (one param group of an arena).

Each function updates ``param`` and the state buffers in place. ``grad_scale`` multiplies the
gradient inside the update: pass the clip coefficient ``min(1, max_norm / (norm + 1e-6))`` to get
clip-by-global-norm without a separate pass over the gradients.
"""
from __future__ import annotations

from . import _check as C
from . import numpy_ref as ref
from ._dispatch import core, cuda, on_cuda, ptr, stream, use_numpy


def _validate(param, grad, *states):
    param = C.array(param, "param", inplace=True)
    grad = C.array(grad, "grad")
    C.same_size(param, "param", grad=grad)
    out = []
    for name, s in states:
        if s is not None:
            s = C.array(s, name, inplace=True)
            C.same_size(param, "param", **{name: s})
        out.append(s)
    C.same_device(param=param, grad=grad, **{n: s for (n, _), s in zip(states, out)})
    return param, grad, out


def _flat(*arrays):
    return [None if a is None else a.reshape(-1) for a in arrays]


def sgd_step(param, grad, momentum_buffer=None, *, lr, momentum=0.0, dampening=0.0,
             weight_decay=0.0, nesterov=False, first_step=False, grad_scale=1.0):
    """torch.optim.SGD's update for one buffer. ``first_step`` initialises the momentum buffer to d."""
    lr = C.number(lr, "lr", lo=0.0)
    momentum = C.number(momentum, "momentum", lo=0.0)
    dampening = C.number(dampening, "dampening")
    weight_decay = C.number(weight_decay, "weight_decay", lo=0.0)
    grad_scale = C.number(grad_scale, "grad_scale", lo=0.0)
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("nesterov momentum requires momentum > 0 and dampening == 0")
    param, grad, (buf,) = _validate(param, grad, ("momentum_buffer", momentum_buffer))
    if momentum and buf is None:
        raise ValueError("momentum_buffer is required when momentum > 0")
    kw = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
              nesterov=bool(nesterov), first_step=bool(first_step), grad_scale=grad_scale)
    if use_numpy():
        return ref.sgd_step(*_flat(param, grad, buf), **kw)
    if on_cuda(param):
        return cuda().sgd_step(ptr(param), ptr(grad), ptr(buf), param.size, lr, momentum, dampening,
                               weight_decay, bool(nesterov), bool(first_step), grad_scale, stream())
    core().sgd_step(param, grad, buf, lr, momentum, dampening, weight_decay, bool(nesterov),
                    bool(first_step), grad_scale)


def adagrad_step(param, grad, state_sum, *, lr, step, lr_decay=0.0, weight_decay=0.0, eps=1e-10,
                 grad_scale=1.0):
    """torch.optim.Adagrad's update; ``step`` counts from 1."""
    lr = C.number(lr, "lr", lo=0.0)
    lr_decay = C.number(lr_decay, "lr_decay", lo=0.0)
    weight_decay = C.number(weight_decay, "weight_decay", lo=0.0)
    eps = C.number(eps, "eps", lo=0.0)
    grad_scale = C.number(grad_scale, "grad_scale", lo=0.0)
    if int(step) < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    param, grad, (state_sum,) = _validate(param, grad, ("state_sum", state_sum))
    clr = lr / (1.0 + (int(step) - 1) * lr_decay)
    if use_numpy():
        return ref.adagrad_step(*_flat(param, grad, state_sum), clr=clr, weight_decay=weight_decay,
                                eps=eps, grad_scale=grad_scale)
    if on_cuda(param):
        return cuda().adagrad_step(ptr(param), ptr(grad), ptr(state_sum), param.size, clr,
                                   weight_decay, eps, grad_scale, stream())
    core().adagrad_step(param, grad, state_sum, clr, weight_decay, eps, grad_scale)


def rmsprop_step(param, grad, square_avg, grad_avg=None, momentum_buffer=None, *, lr, alpha=0.99,
                 eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, grad_scale=1.0):
    """torch.optim.RMSprop's update; ``grad_avg`` is needed when centered, ``momentum_buffer`` when momentum > 0."""
    lr = C.number(lr, "lr", lo=0.0)
    alpha = C.number(alpha, "alpha", lo=0.0, hi=1.0)
    eps = C.number(eps, "eps", lo=0.0)
    weight_decay = C.number(weight_decay, "weight_decay", lo=0.0)
    momentum = C.number(momentum, "momentum", lo=0.0)
    grad_scale = C.number(grad_scale, "grad_scale", lo=0.0)
    param, grad, (sq, gavg, buf) = _validate(param, grad, ("square_avg", square_avg),
                                             ("grad_avg", grad_avg),
                                             ("momentum_buffer", momentum_buffer))
    if centered and gavg is None:
        raise ValueError("grad_avg is required when centered=True")
    if momentum > 0 and buf is None:
        raise ValueError("momentum_buffer is required when momentum > 0")
    gavg = gavg if centered else None
    buf = buf if momentum > 0 else None
    if use_numpy():
        return ref.rmsprop_step(*_flat(param, grad, sq, gavg, buf), lr=lr, alpha=alpha, eps=eps,
                                weight_decay=weight_decay, momentum=momentum, grad_scale=grad_scale)
    if on_cuda(param):
        return cuda().rmsprop_step(ptr(param), ptr(grad), ptr(sq), ptr(gavg), ptr(buf), param.size,
                                   lr, alpha, eps, weight_decay, momentum, grad_scale, stream())
    core().rmsprop_step(param, grad, sq, gavg, buf, lr, alpha, eps, weight_decay, momentum, grad_scale)


def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq=None, *, lr, beta1=0.9, beta2=0.999,
              eps=1e-8, weight_decay=0.0, decoupled=False, amsgrad=False, step, grad_scale=1.0):
    """torch.optim.Adam's (``decoupled=False``) or AdamW's (``decoupled=True``) update; ``step`` from 1."""
    lr = C.number(lr, "lr", lo=0.0)
    beta1 = C.number(beta1, "beta1", lo=0.0, hi=1.0, hi_open=True)
    beta2 = C.number(beta2, "beta2", lo=0.0, hi=1.0, hi_open=True)
    eps = C.number(eps, "eps", lo=0.0)
    weight_decay = C.number(weight_decay, "weight_decay", lo=0.0)
    grad_scale = C.number(grad_scale, "grad_scale", lo=0.0)
    if int(step) < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    param, grad, (m, v, vmax) = _validate(param, grad, ("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq),
                                          ("max_exp_avg_sq", max_exp_avg_sq))
    if amsgrad and vmax is None:
        raise ValueError("max_exp_avg_sq is required when amsgrad=True")
    vmax = vmax if amsgrad else None
    step = int(step)
    if use_numpy():
        return ref.adam_step(*_flat(param, grad, m, v, vmax), lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                             weight_decay=weight_decay, decoupled=bool(decoupled), step=step,
                             grad_scale=grad_scale)
    if on_cuda(param):
        return cuda().adam_step(ptr(param), ptr(grad), ptr(m), ptr(v), ptr(vmax), param.size, lr,
                                beta1, beta2, eps, weight_decay, bool(decoupled), step, grad_scale,
                                stream())
    core().adam_step(param, grad, m, v, vmax, lr, beta1, beta2, eps, weight_decay, bool(decoupled),
                     step, grad_scale)


def ema_update(avg, param, decay):
    """avg = decay * avg + (1 - decay) * param, in place (EMA / SWA weight averaging)."""
    decay = C.number(decay, "decay", lo=0.0, hi=1.0)
    avg = C.array(avg, "avg", inplace=True)
    param = C.array(param, "param")
    C.same_size(avg, "avg", param=param)
    C.same_device(avg=avg, param=param)
    if use_numpy():
        return ref.ema_update(avg.reshape(-1), param.reshape(-1), decay)
    if on_cuda(avg):
        return cuda().ema_update(ptr(avg), ptr(param), avg.size, decay, stream())
    core().ema_update(avg, param, decay)
