"""MLP: the lesson's fully connected classifier, Linear -> BatchNorm1d -> activation -> Dropout
blocks in one Sequential (so each BN + ReLU + dropout runs as one fused kernel)."""
from __future__ import annotations

import numpy as np

from .. import nn
from ..ops import _check
from ._common import ready

_ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


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
        in_features = _check.integer(in_features, "MLP in_features", lo=1)
        num_classes = _check.integer(num_classes, "MLP num_classes", lo=1)
        if isinstance(hidden, (int, np.integer)):
            hidden = (hidden,)
        hidden = tuple(_check.integer(h, f"MLP hidden[{i}]", lo=1) for i, h in enumerate(hidden))
        dropout = _check.probability(dropout, "MLP dropout")
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
