"""SGD (momentum, dampening, Nesterov, weight decay) and NormalizedSGD (gradient direction only)."""
from __future__ import annotations

from ..ops import optim as kernels
from ..ops.optim import check_nesterov, hyper
from .optimizer import Optimizer


class SGD(Optimizer):
    """torch.optim.SGD: d = g + wd*p; buf = m*buf + (1-dampening)*d (buf = d at the first step);
    d = d + m*buf (Nesterov) or buf; p -= lr*d."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                 *, max_grad_norm=None):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov), max_grad_norm)

    def _validate(self, g):
        for name in ("lr", "momentum", "dampening", "weight_decay"):
            g[name] = hyper(g[name], name)
        g["nesterov"] = check_nesterov(g["nesterov"], g["momentum"], g["dampening"])

    def _update(self, g, data, grad, state, grad_scale):
        buf = None
        first = False
        if g["momentum"] > 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = self._zeros(data)
                first = True
        kernels.sgd_update(data, grad, buf, lr=g["lr"], momentum=g["momentum"], dampening=g["dampening"],
                           weight_decay=g["weight_decay"], nesterov=g["nesterov"], first_step=first,
                           grad_scale=grad_scale)


class NormalizedSGD(SGD):
    """Uses only the direction of the gradient: p -= lr * g / (||g|| + eps), ||g|| being the
    global L2 norm over all param groups (one reduction, folded into the update as grad_scale).
    Momentum, dampening, Nesterov and weight decay act as in SGD on the normalized gradient."""

    def __init__(self, params, lr=1e-2, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                 eps=1e-8, *, max_grad_norm=None):
        self.eps = hyper(eps, "eps")
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                         nesterov=nesterov, max_grad_norm=max_grad_norm)

    def _clip_scale(self, norm=None) -> float:
        if norm is None:
            norm = self.grad_norm()
        self.last_grad_norm = norm
        return 1.0 / (norm + self.eps) if norm + self.eps > 0 else 0.0
