"""fusetrain.data: bundled datasets (scikit-learn's digits, procedural MNIST-1D), an IDX reader
for MNIST-format files, synthetic MNIST-shaped data, mini-batching and scaling helpers."""
from __future__ import annotations

from .datasets import load_digits, load_mnist1d, make_synthetic_mnist, train_test_split
from .idx import load_idx_dataset, read_idx, write_idx
from .loader import DataLoader, batches
from .transforms import scale, standardize

__all__ = ["DataLoader", "batches", "load_digits", "load_idx_dataset", "load_mnist1d", "make_synthetic_mnist",
           "read_idx", "scale", "standardize", "train_test_split", "write_idx"]
