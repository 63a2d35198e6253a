"""fusetrain: fast neural-network training from Python on fused C++ (and CUDA) kernels."""
from __future__ import annotations

__version__ = "0.1.0"

from . import backend, ops, random  # noqa: E402
from . import nn, optim  # noqa: E402
from .backend import cuda_available  # noqa: E402
from .random import manual_seed  # noqa: E402

__all__ = ["__version__", "backend", "cuda_available", "manual_seed", "nn", "ops", "optim", "random"]
