"""The model zoo of bench_zoo.py: standard architectures written once, as functions of an ``nn``
namespace, so that ``fusetrain.nn`` and ``torch.nn`` (through ``torch_nn``, which adds the two
layers torch spells differently: Residual and GlobalAvgPool2d) build the same network with the
same state_dict keys. ``count_macs`` walks a fusetrain model and counts the multiply-adds of its
convolutions and linear layers from the layer shapes."""
from __future__ import annotations

import math
from types import SimpleNamespace

# ---------------------------------------------------------------- architectures


def lenet5(nn):
    """LeNet-5 (LeCun et al. 1998) with ReLU and max pooling, on (N, 1, 28, 28)."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def _basic_block(nn, cin, cout, stride):
    """relu(bn(conv3x3(relu(bn(conv3x3_stride(x))))) + shortcut(x)); the shortcut projects with a
    1x1 stride-s conv + BN when the shape changes (He et al. 2016, option B)."""
    block = nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
    shortcut = None
    if stride != 1 or cin != cout:
        shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
    return nn.Sequential(nn.Residual(block, shortcut), nn.ReLU())


def resnet20(nn):
    """ResNet-20 for CIFAR (He et al. 2016, section 4.2): conv3x3(16)-BN-ReLU, 3 stages of 3 basic
    blocks (16/32/64 channels, stride 2 at the start of stages 2 and 3), global average pool, FC."""
    layers, cin = [nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
    for stage, width in enumerate((16, 32, 64)):
        for i in range(3):
            layers.append(_basic_block(nn, cin, width, 2 if stage > 0 and i == 0 else 1))
            cin = width
    return nn.Sequential(*layers, nn.GlobalAvgPool2d(), nn.Linear(64, 10))


def vgg_small(nn):
    """Two VGG stages (64, 128 channels) of two conv3x3 each, every conv followed by BatchNorm2d
    (the common modern variant; the convs keep their bias, as torchvision's vgg*_bn do) and ReLU,
    max pooling after each stage, then one linear classifier on (N, 128*8*8)."""
    def cbr(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*cbr(3, 64), *cbr(64, 64), nn.MaxPool2d(2), *cbr(64, 128), *cbr(128, 128), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(128 * 8 * 8, 10))


def mobilenet_small(nn):
    """MobileNet-style (Howard et al. 2017): conv3x3(32)-BN-ReLU, then depthwise-separable blocks
    dw3x3(groups=C, stride s)-BN-ReLU-pw1x1-BN-ReLU (all bias-free), global average pool, FC."""
    layers = [nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU()]
    for cin, cout, s in ((32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1)):
        layers += [nn.Conv2d(cin, cin, 3, stride=s, padding=1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(),
                   nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*layers, nn.GlobalAvgPool2d(), nn.Linear(256, 10))


def mnist1d_cnn(nn):
    """A strided 1-D CNN for MNIST-1D signals (N, 1, 40): three stride-2 convs, then FC."""
    return nn.Sequential(
        nn.Conv1d(1, 32, 5, stride=2, padding=1), nn.ReLU(),
        nn.Conv1d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv1d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 5, 10))


def mlp_digits(nn):
    """MLP 64-256-256-10 with ReLU, for scikit-learn's 8x8 digits."""
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def mlp_recipe(nn):
    """bench_train.py's MLP: 784-1024-1024-10, each hidden layer Linear (no bias)-BN-ReLU-Dropout(0.3)."""
    layers, width = [], 784
    for h in (1024, 1024):
        layers += [nn.Linear(width, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(), nn.Dropout(0.3)]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, 10))


# name -> (builder, input shape with the batch first, optimizer recipe: see make_optimizer).
ZOO = {
    "lenet": (lenet5, (64, 1, 28, 28), "sgd"),
    "resnet20": (resnet20, (128, 3, 32, 32), "sgd"),
    "vgg": (vgg_small, (64, 3, 32, 32), "sgd"),
    "mobilenet": (mobilenet_small, (64, 3, 32, 32), "sgd"),
    "mnist1d": (mnist1d_cnn, (100, 1, 40), "sgd"),
    "mlp_digits": (mlp_digits, (32, 64), "sgd"),
    "mlp_recipe": (mlp_recipe, (128, 784), "adamw_clip"),
}


def make_optimizer(optim, kind, params):
    """fusetrain's optimizer for a recipe: "sgd" is SGD lr 0.01 momentum 0.9; "adamw_clip" AdamW lr
    1e-3, weight decay 1e-2, with gradient clipping by global norm 1.0 folded into the step."""
    if kind == "sgd":
        return optim.SGD(params, lr=0.01, momentum=0.9)
    return optim.AdamW(params, lr=1e-3, weight_decay=1e-2, max_grad_norm=1.0)


# ---------------------------------------------------------------- torch spelling


def torch_nn(torch):
    """torch.nn plus Residual(block, shortcut) and GlobalAvgPool2d with fusetrain's semantics and
    state_dict keys (``block.*``, ``shortcut.*``; no parameters in the pooling)."""
    tnn = torch.nn

    class Residual(tnn.Module):
        def __init__(self, block, shortcut=None):
            super().__init__()
            self.block, self.shortcut = block, shortcut

        def forward(self, x):
            return self.block(x) + (x if self.shortcut is None else self.shortcut(x))

    class GlobalAvgPool2d(tnn.Module):
        def forward(self, x):
            return x.mean((2, 3))

    names = ("Sequential", "Conv1d", "Conv2d", "BatchNorm1d", "BatchNorm2d", "ReLU", "MaxPool2d", "Flatten",
             "Linear", "Dropout")
    return SimpleNamespace(**{n: getattr(tnn, n) for n in names}, Residual=Residual, GlobalAvgPool2d=GlobalAvgPool2d)


# ---------------------------------------------------------------- work per step


def count_macs(model, input_shape):
    """(multiply-adds of one forward pass over a batch of ``input_shape``, output shape), counted
    from the shapes of the convolutions and linear layers of a fusetrain model (normalization,
    activations and pooling are left out: they are a few percent of the arithmetic)."""
    from fusetrain import nn
    from fusetrain.ops.conv import window_out_size

    def spatial(v, n):
        return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n

    def walk(m, shape):
        if isinstance(m, nn.Sequential):
            total = 0
            for child in m:
                macs, shape = walk(child, shape)
                total += macs
            return total, shape
        if isinstance(m, nn.Residual):
            macs, out = walk(m.block, shape)
            return macs + (walk(m.shortcut, shape)[0] if m.shortcut is not None else 0), out
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            out_sp = tuple(window_out_size(n, k, s, p, d) for n, k, s, p, d in
                           zip(shape[2:], m.kernel_size, m.stride, m.padding, m.dilation))
            per_output = m.in_channels // m.groups * math.prod(m.kernel_size)
            return shape[0] * m.out_channels * math.prod(out_sp) * per_output, (shape[0], m.out_channels) + out_sp
        if isinstance(m, nn.Linear):
            rows = math.prod(shape[:-1])
            return rows * m.in_features * m.out_features, tuple(shape[:-1]) + (m.out_features,)
        if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)):
            n = len(shape) - 2
            dil = spatial(getattr(m, "dilation", 1), n)
            out_sp = tuple(window_out_size(s_, k, st, p, d) for s_, k, st, p, d in
                           zip(shape[2:], spatial(m.kernel_size, n), spatial(m.stride, n), spatial(m.padding, n), dil))
            return 0, tuple(shape[:2]) + out_sp
        if isinstance(m, (nn.GlobalAvgPool1d, nn.GlobalAvgPool2d)):
            return 0, tuple(shape[:2])
        if isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1:
            return 0, (shape[0], math.prod(shape[1:]))
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.Dropout, nn.Identity)):
            return 0, tuple(shape)
        raise TypeError(f"count_macs does not know how {type(m).__name__} changes the shape")

    return walk(model, tuple(input_shape))
