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
