"""Adaptive optimizers: Adagrad, RMSprop, Adam and AdamW (PyTorch's update rules, fused kernels)."""
from __future__ import annotations

from ..ops import optim as kernels
from ..ops.optim import hyper
from .optimizer import Optimizer


class Adagrad(Optimizer):
    """torch.optim.Adagrad: sum += d*d; p -= lr/(1+(t-1)*lr_decay) * d/(sqrt(sum)+eps)."""

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                 eps=1e-10, *, max_grad_norm=None):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps),
                         max_grad_norm)

    def _validate(self, g):
        for name in ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            g[name] = hyper(g[name], name)

    def _update(self, g, data, grad, state, grad_scale):
        self._init_state(state, data, "sum", fill=g["initial_accumulator_value"])
        state["step"] += 1
        kernels.adagrad_update(data, grad, state["sum"], lr=g["lr"], step=state["step"], lr_decay=g["lr_decay"],
                               weight_decay=g["weight_decay"], eps=g["eps"], grad_scale=grad_scale)


class RMSprop(Optimizer):
    """torch.optim.RMSprop (optionally centered, with momentum)."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                 *, max_grad_norm=None):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered), max_grad_norm)

    def _validate(self, g):
        for name in ("lr", "alpha", "eps", "weight_decay", "momentum"):
            g[name] = hyper(g[name], name)
        g["centered"] = bool(g["centered"])

    def _update(self, g, data, grad, state, grad_scale):
        optional = (("grad_avg",) if g["centered"] else ()) + (("momentum_buffer",) if g["momentum"] > 0 else ())
        self._init_state(state, data, "square_avg", *optional)
        state["step"] += 1
        kernels.rmsprop_update(data, grad, state["square_avg"], state["grad_avg"] if g["centered"] else None,
                               state["momentum_buffer"] if g["momentum"] > 0 else None, lr=g["lr"], alpha=g["alpha"],
                               eps=g["eps"], weight_decay=g["weight_decay"], momentum=g["momentum"],
                               grad_scale=grad_scale)


class Adam(Optimizer):
    """torch.optim.Adam (L2 weight decay added to the gradient; optional AMSGrad)."""

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 *, max_grad_norm=None):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad),
                         max_grad_norm)

    def _validate(self, g):
        betas = g["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        g["betas"] = (hyper(betas[0], "beta", "betas[0]"), hyper(betas[1], "beta", "betas[1]"))
        for name in ("lr", "eps", "weight_decay"):
            g[name] = hyper(g[name], name)
        g["amsgrad"] = bool(g["amsgrad"])

    def _update(self, g, data, grad, state, grad_scale):
        self._init_state(state, data, "exp_avg", "exp_avg_sq", *(("max_exp_avg_sq",) if g["amsgrad"] else ()))
        state["step"] += 1
        b1, b2 = g["betas"]
        kernels.adam_update(data, grad, state["exp_avg"], state["exp_avg_sq"],
                            state["max_exp_avg_sq"] if g["amsgrad"] else None, lr=g["lr"], beta1=b1, beta2=b2,
                            eps=g["eps"], weight_decay=g["weight_decay"], decoupled=self._decoupled,
                            step=state["step"], grad_scale=grad_scale)


class AdamW(Adam):
    """torch.optim.AdamW: decoupled weight decay p *= 1 - lr*wd before the Adam update."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                 *, max_grad_norm=None):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         max_grad_norm=max_grad_norm)
