"""NumPy twins of the optimizer updates and weight averaging (PyTorch's single-tensor rules)."""
from __future__ import annotations

import math

import numpy as np


def sgd_step(p, g, buf, *, lr, momentum, dampening, weight_decay, nesterov, first_step, grad_scale):
    d = g * grad_scale if grad_scale != 1.0 else g.copy()
    if weight_decay:
        d += weight_decay * p
    if momentum:
        if first_step:
            buf[...] = d
        else:
            buf *= momentum
            buf += (1.0 - dampening) * d
        d = d + momentum * buf if nesterov else buf
    p -= lr * d


def adagrad_step(p, g, state_sum, *, clr, weight_decay, eps, grad_scale):
    d = g * grad_scale
    if weight_decay:
        d += weight_decay * p
    state_sum += d * d
    p -= clr * d / (np.sqrt(state_sum) + eps)


def rmsprop_step(p, g, sq, gavg, buf, *, lr, alpha, eps, weight_decay, momentum, grad_scale):
    d = g * grad_scale
    if weight_decay:
        d += weight_decay * p
    sq *= alpha
    sq += (1.0 - alpha) * d * d
    if gavg is not None:
        gavg += (1.0 - alpha) * (d - gavg)
        avg = np.sqrt(sq - gavg * gavg) + eps
    else:
        avg = np.sqrt(sq) + eps
    if momentum > 0:
        buf *= momentum
        buf += d / avg
        p -= lr * buf
    else:
        p -= lr * d / avg


def adam_step(p, g, m, v, vmax, *, lr, beta1, beta2, eps, weight_decay, decoupled, step, grad_scale):
    d = g * grad_scale
    if weight_decay:
        if decoupled:
            p *= 1.0 - lr * weight_decay
        else:
            d += weight_decay * p
    m += (1.0 - beta1) * (d - m)
    v *= beta2
    v += (1.0 - beta2) * d * d
    if vmax is not None:
        np.maximum(vmax, v, out=vmax)
        v = vmax
    bc1 = 1.0 - beta1**step
    bc2_sqrt = math.sqrt(1.0 - beta2**step)
    p -= (lr / bc1) * m / (np.sqrt(v) / bc2_sqrt + eps)


def ema_update(avg, p, decay):
    avg += (1.0 - decay) * (p - avg)
