"""fusetrain: fast neural-network training from Python on fused C++ (and CUDA) kernels."""
from __future__ import annotations

__version__ = "0.1.0"

from . import backend, ops, random  # noqa: E402
from . import nn, optim  # noqa: E402
from . import callbacks, data, models, train  # noqa: E402
from .backend import cuda_available  # noqa: E402
from .random import manual_seed  # noqa: E402
from .train import Trainer  # noqa: E402

__all__ = ["Trainer", "__version__", "backend", "callbacks", "cuda_available", "data", "manual_seed", "models", "nn", "ops",
           "optim", "random", "train"]
