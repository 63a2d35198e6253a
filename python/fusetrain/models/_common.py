"""Helpers shared by the ready models."""
from __future__ import annotations

from .. import nn


def skip_input_grad(model):
    """The first weight layer's input gradient (d loss / d data) is never used by training: switch
    it off (``input_grad = False``), saving that layer's input-gradient GEMM. ``model.backward``
    then returns None."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            m.input_grad = False
            return model
    return model


def head(layers, dropout, features, num_classes):
    """layers followed by the classifier: dropout (when asked) and Linear(features, num_classes)."""
    return layers + ([nn.Dropout(dropout)] if dropout else []) + [nn.Linear(features, num_classes)]


def ready(model):
    """The set-up every ready model ends with: its first input gradient off (skip_input_grad) and
    its parameters in one arena, so every optimizer step is one kernel call."""
    skip_input_grad(model)
    model.flatten_parameters()
    return model
