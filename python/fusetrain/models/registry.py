"""The ready models by name (what ``fusetrain train --model`` offers): how each is built from the
input shape and a few options, which inputs it takes and which options apply to it."""
from __future__ import annotations

import math

from .cnn import CNN1d, SmallInception, SmallResNet
from .mlp import MLP

OPTIONS = ("hidden", "widths", "activation", "init", "batchnorm", "dropout")


class ModelInputError(ValueError):
    """The data's samples do not fit the chosen model (e.g. images for a 1-D CNN)."""


class Spec:
    """How to build one named model: ``build(in_shape, num_classes, **options)``; whether it
    wants flat (N, features) inputs; the OPTIONS it takes; how many ``widths`` it needs."""

    def __init__(self, name, build, flat_inputs, options, n_widths=None):
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ValueError(f"model {name!r}: unknown options {unknown}; expected names from {OPTIONS}")
        self.name, self.build, self.flat_inputs = name, build, bool(flat_inputs)
        self.options, self.n_widths = tuple(options), n_widths

    def __call__(self, in_shape, num_classes, **options):
        """The model for samples of shape ``in_shape`` (without the batch axis); options it does
        not take are refused, those left out keep the model's defaults."""
        extra = sorted(k for k in options if k not in self.options)
        if extra:
            raise ValueError(f"model {self.name!r} does not take {', '.join(extra)}; it takes "
                             f"{', '.join(self.options) or 'no options'}")
        widths = options.get("widths")
        if widths is not None and self.n_widths is not None and len(widths) != self.n_widths:
            raise ValueError(f"model {self.name!r} takes {self.n_widths} widths, got {len(widths)}")
        return self.build(tuple(int(s) for s in in_shape), int(num_classes), **options)


MODELS: dict = {}


def register(name, build, flat_inputs, options=(), n_widths=None) -> Spec:
    """Make model ``name`` available by name (and as ``fusetrain train --model name``)."""
    MODELS[name] = Spec(name, build, flat_inputs, options, n_widths)
    return MODELS[name]


def get(name) -> Spec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def _check_input(name, shape, ndim, min_size, what, hint):
    """Refuse samples unless they have ``ndim`` axes, the spatial ones at least ``min_size``."""
    if len(shape) != ndim or any(s < min_size for s in shape[1:]):
        raise ModelInputError(f"{name} needs {what}, but the samples have shape {shape}; {hint}")


def _mlp(shape, num_classes, **options):
    return MLP(math.prod(shape), num_classes=num_classes, **options)


def _cnn1d(shape, num_classes, widths=None, **options):
    # two 2x max-pools: a length below 4 would pool down to nothing
    _check_input("cnn1d", shape, 2, 4, "1-D signals (N, channels, length >= 4) such as mnist1d",
                 "use resnet, inception or mlp for images")
    return CNN1d(shape[0], num_classes, **({} if widths is None else {"channels": tuple(widths)}), **options)


def _resnet(shape, num_classes, widths=None, **options):
    _check_input("resnet", shape, 3, 2, "images (N, channels, height >= 2, width >= 2) such as digits",
                 "use cnn1d or mlp for 1-D signals")
    return SmallResNet(shape[0], num_classes, **({} if widths is None else {"widths": tuple(widths)}), **options)


def _inception(shape, num_classes, **options):
    _check_input("inception", shape, 3, 2, "images (N, channels, height >= 2, width >= 2) such as digits",
                 "use cnn1d or mlp for 1-D signals")
    return SmallInception(shape[0], num_classes, **options)


register("mlp", _mlp, True, ("hidden", "activation", "init", "batchnorm", "dropout"))
register("cnn1d", _cnn1d, False, ("widths", "batchnorm", "dropout"), n_widths=3)
register("resnet", _resnet, False, ("widths", "dropout"), n_widths=2)
register("inception", _inception, False, ("dropout",))
