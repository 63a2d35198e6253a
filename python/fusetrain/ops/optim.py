"""Fused optimizer updates over contiguous float32 buffers (one param group of an arena).

Each ``*_step`` checks its arguments, then updates ``param`` and the state buffers in place
through ``*_update``, which checks nothing: fusetrain.optim's optimizers call that directly, their
hyper-parameters checked once (when a group is added or loaded) by the same rules (``hyper``) and
their buffers their own. ``grad_scale`` multiplies the gradient inside the update: pass the clip
coefficient ``min(1, max_norm / (norm + 1e-6))`` to get clip-by-global-norm without a separate
pass over the gradients.
"""
from __future__ import annotations

from . import _check as C
from . import numpy_ref as ref
from ._dispatch import kernel, use_numpy

# Each hyper-parameter's valid range, for the ops here and the optimizers alike.
_RULES = {
    "lr": dict(lo=0.0), "momentum": dict(lo=0.0), "dampening": {}, "weight_decay": dict(lo=0.0),
    "eps": dict(lo=0.0), "lr_decay": dict(lo=0.0), "initial_accumulator_value": dict(lo=0.0),
    "alpha": dict(lo=0.0, hi=1.0), "beta": dict(lo=0.0, hi=1.0, hi_open=True), "grad_scale": dict(lo=0.0),
    "decay": dict(lo=0.0, hi=1.0),
}


def hyper(value, rule: str, name: str | None = None) -> float:
    """``value`` checked as the hyper-parameter ``rule`` ("lr", "beta", ...); errors name it ``name``
    (default: the rule)."""
    return C.number(value, name or rule, **_RULES[rule])


def check_nesterov(nesterov, momentum: float, dampening: float) -> bool:
    nesterov = bool(nesterov)
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("nesterov=True requires momentum > 0 and dampening == 0, got "
                         f"momentum={momentum}, dampening={dampening}")
    return nesterov


def check_step(step) -> int:
    step = C.integer(step, "step")
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    return step


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
    lr, momentum, dampening = hyper(lr, "lr"), hyper(momentum, "momentum"), hyper(dampening, "dampening")
    weight_decay, grad_scale = hyper(weight_decay, "weight_decay"), hyper(grad_scale, "grad_scale")
    nesterov = check_nesterov(nesterov, momentum, dampening)
    param, grad, (buf,) = _validate(param, grad, ("momentum_buffer", momentum_buffer))
    if momentum and buf is None:
        raise ValueError("momentum_buffer is required when momentum > 0")
    sgd_update(param, grad, buf, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
               nesterov=nesterov, first_step=bool(first_step), grad_scale=grad_scale)


def sgd_update(param, grad, buf, *, lr, momentum, dampening, weight_decay, nesterov, first_step, grad_scale):
    if use_numpy():
        return ref.sgd_step(*_flat(param, grad, buf), lr=lr, momentum=momentum, dampening=dampening,
                            weight_decay=weight_decay, nesterov=nesterov, first_step=first_step,
                            grad_scale=grad_scale)
    kernel("sgd_step", param)(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first_step,
                              grad_scale)


def adagrad_step(param, grad, state_sum, *, lr, step, lr_decay=0.0, weight_decay=0.0, eps=1e-10,
                 grad_scale=1.0):
    """torch.optim.Adagrad's update; ``step`` counts from 1."""
    lr, lr_decay, eps = hyper(lr, "lr"), hyper(lr_decay, "lr_decay"), hyper(eps, "eps")
    weight_decay, grad_scale = hyper(weight_decay, "weight_decay"), hyper(grad_scale, "grad_scale")
    step = check_step(step)
    param, grad, (state_sum,) = _validate(param, grad, ("state_sum", state_sum))
    adagrad_update(param, grad, state_sum, lr=lr, step=step, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps,
                   grad_scale=grad_scale)


def adagrad_update(param, grad, state_sum, *, lr, step, lr_decay, weight_decay, eps, grad_scale):
    clr = lr / (1.0 + (step - 1) * lr_decay)
    if use_numpy():
        return ref.adagrad_step(*_flat(param, grad, state_sum), clr=clr, weight_decay=weight_decay, eps=eps,
                                grad_scale=grad_scale)
    kernel("adagrad_step", param)(param, grad, state_sum, clr, weight_decay, eps, grad_scale)


def rmsprop_step(param, grad, square_avg, grad_avg=None, momentum_buffer=None, *, lr, alpha=0.99,
                 eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, grad_scale=1.0):
    """torch.optim.RMSprop's update; ``grad_avg`` is needed when centered, ``momentum_buffer`` when momentum > 0."""
    lr, alpha, eps = hyper(lr, "lr"), hyper(alpha, "alpha"), hyper(eps, "eps")
    weight_decay, momentum = hyper(weight_decay, "weight_decay"), hyper(momentum, "momentum")
    grad_scale = hyper(grad_scale, "grad_scale")
    param, grad, (sq, gavg, buf) = _validate(param, grad, ("square_avg", square_avg), ("grad_avg", grad_avg),
                                             ("momentum_buffer", momentum_buffer))
    if centered and gavg is None:
        raise ValueError("grad_avg is required when centered=True")
    if momentum > 0 and buf is None:
        raise ValueError("momentum_buffer is required when momentum > 0")
    rmsprop_update(param, grad, sq, gavg if centered else None, buf if momentum > 0 else None, lr=lr, alpha=alpha,
                   eps=eps, weight_decay=weight_decay, momentum=momentum, grad_scale=grad_scale)


def rmsprop_update(param, grad, square_avg, grad_avg, momentum_buffer, *, lr, alpha, eps, weight_decay, momentum,
                   grad_scale):
    """grad_avg: None unless centered; momentum_buffer: None unless momentum > 0."""
    if use_numpy():
        return ref.rmsprop_step(*_flat(param, grad, square_avg, grad_avg, momentum_buffer), lr=lr, alpha=alpha,
                                eps=eps, weight_decay=weight_decay, momentum=momentum, grad_scale=grad_scale)
    kernel("rmsprop_step", param)(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay,
                                  momentum, grad_scale)


def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq=None, *, lr, beta1=0.9, beta2=0.999,
              eps=1e-8, weight_decay=0.0, decoupled=False, amsgrad=False, step, grad_scale=1.0):
    """torch.optim.Adam's (``decoupled=False``) or AdamW's (``decoupled=True``) update; ``step`` from 1."""
    lr, beta1, beta2 = hyper(lr, "lr"), hyper(beta1, "beta", "beta1"), hyper(beta2, "beta", "beta2")
    eps, weight_decay = hyper(eps, "eps"), hyper(weight_decay, "weight_decay")
    grad_scale = hyper(grad_scale, "grad_scale")
    step = check_step(step)
    param, grad, (m, v, vmax) = _validate(param, grad, ("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq),
                                          ("max_exp_avg_sq", max_exp_avg_sq))
    if amsgrad and vmax is None:
        raise ValueError("max_exp_avg_sq is required when amsgrad=True")
    adam_update(param, grad, m, v, vmax if amsgrad else None, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                weight_decay=weight_decay, decoupled=bool(decoupled), step=step, grad_scale=grad_scale)


def adam_update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *, lr, beta1, beta2, eps, weight_decay, decoupled,
                step, grad_scale):
    """max_exp_avg_sq: None unless amsgrad."""
    if use_numpy():
        return ref.adam_step(*_flat(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq), lr=lr, beta1=beta1,
                             beta2=beta2, eps=eps, weight_decay=weight_decay, decoupled=decoupled, step=step,
                             grad_scale=grad_scale)
    kernel("adam_step", param)(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                               decoupled, step, grad_scale)


def ema_update(avg, param, decay):
    """avg = decay * avg + (1 - decay) * param, in place (EMA / SWA weight averaging)."""
    decay = hyper(decay, "decay")
    avg = C.array(avg, "avg", inplace=True)
    param = C.array(param, "param")
    C.same_size(avg, "avg", param=param)
    C.same_device(avg=avg, param=param)
    if use_numpy():
        return ref.ema_update(avg.reshape(-1), param.reshape(-1), decay)
    kernel("ema_update", avg)(avg, param, decay)
