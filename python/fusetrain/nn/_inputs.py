"""The input checks the layers share; each message names the layer (its repr)."""
from __future__ import annotations


def check_array(layer, x, what="an array"):
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{layer!r}: expected {what} input, got {type(x).__name__}")


def check_floating(layer, x):
    if not hasattr(x, "dtype") or x.dtype.kind != "f":
        raise TypeError(f"{layer!r}: expected a floating-point array, got {getattr(x, 'dtype', type(x).__name__)}")


def check_dtype(layer, x, like):
    """x must have the dtype of the layer's parameters (like)."""
    if x.dtype != like.dtype:
        raise TypeError(f"{layer!r}: expected a {like.dtype} input (the dtype of its parameters), got "
                        f"{x.dtype}; convert it with x.astype(numpy.{like.dtype})")
