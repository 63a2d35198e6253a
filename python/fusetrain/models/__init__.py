"""fusetrain.models: small ready models (MLP, 1-D CNN, small ResNet, small Inception net)."""
from __future__ import annotations

from .cnn import CNN1d, SmallInception, SmallResNet
from .mlp import MLP

__all__ = ["CNN1d", "MLP", "SmallInception", "SmallResNet"]
