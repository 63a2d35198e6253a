"""MLP: the lesson's fully connected classifier, Linear -> BatchNorm1d -> activation -> Dropout
blocks in one Sequential (so each BN + ReLU + dropout runs as one fused kernel)."""
from __future__ import annotations

import numpy as np

from .. import nn
from ._common import ready

_ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def _positive_int(v, name):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"MLP {name} must be a positive int, got {v!r}")
    return int(v)


class MLP(nn.Sequential):
    """``in_features -> hidden[0] -> ... -> hidden[-1] -> num_classes`` logits.

    Each hidden block is Linear -> BatchNorm1d (when ``batchnorm``) -> activation -> Dropout
    (when ``dropout > 0``). With batchnorm the block's Linear has no bias (BN's shift replaces
    it). ``init`` names the weight initializer of every Linear (any ``fusetrain.nn.init.get``
    name: ``"he_normal"``, ``"glorot_uniform"``, ``"lecun_normal"``, ...; biases start at 0).
    The parameters are packed into one flat arena. The first Linear computes no input gradient
    (training never needs d loss / d data), so ``backward`` returns None.
    """

    def __init__(self, in_features, hidden=(256, 256), num_classes=10, batchnorm=True, dropout=0.0,
                 activation="relu", init="he_normal"):
        in_features = _positive_int(in_features, "in_features")
        num_classes = _positive_int(num_classes, "num_classes")
        if isinstance(hidden, (int, np.integer)):
            hidden = (hidden,)
        hidden = tuple(_positive_int(h, f"hidden[{i}]") for i, h in enumerate(hidden))
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLP dropout must be a probability in [0, 1), got {dropout!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"MLP activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        nn.init.get(init)  # fail early, naming the valid initializers
        layers = []
        width = in_features
        for h in hidden:
            layers.append(nn.Linear(width, h, bias=not batchnorm, init=init))
            if batchnorm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(_ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(float(dropout)))
            width = h
        layers.append(nn.Linear(width, num_classes, init=init))
        super().__init__(*layers)
        self.in_features, self.hidden, self.num_classes = in_features, hidden, num_classes
        ready(self)
