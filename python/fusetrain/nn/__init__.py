"""fusetrain.nn: modules, layers, containers, losses, initializers and utilities with PyTorch's
names and semantics, plus an explicit backward pass running on the fused kernels."""
from __future__ import annotations

from . import init, utils
from .activation import LeakyReLU, ReLU, Sigmoid, Tanh
from .arena import Arena, flatten_parameters
from .container import Concat, ModuleList, Parallel, Residual, Sequential
from .conv import Conv1d, Conv2d
from .dropout import Dropout
from .linear import Flatten, Identity, Linear
from .loss import CrossEntropyLoss, MSELoss
from .module import Module
from .normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from .parameter import Parameter
from .pooling import (AdaptiveAvgPool1d, AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, GlobalAvgPool1d, GlobalAvgPool2d,
                      MaxPool1d, MaxPool2d)
from .sync_batchnorm import SyncBatchNorm

__all__ = [
    "Arena", "BatchNorm1d", "BatchNorm2d", "Concat", "CrossEntropyLoss", "Dropout", "Flatten", "Identity",
    "LayerNorm", "LeakyReLU", "Linear", "MSELoss", "Module", "ModuleList", "Parallel", "Parameter", "ReLU",
    "Residual", "Sequential", "Sigmoid", "Tanh", "flatten_parameters", "init", "utils",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AvgPool1d", "AvgPool2d", "Conv1d", "Conv2d", "GlobalAvgPool1d",
    "GlobalAvgPool2d", "MaxPool1d", "MaxPool2d", "SyncBatchNorm",
]
