"""Convolutional building blocks (residual basic block, Inception block) and small ready CNNs:
CNN1d for MNIST-1D, SmallResNet and SmallInception for 2-D images (e.g. (N, 3, 32, 32) or
scikit-learn's 8x8 digits as (N, 1, 8, 8))."""
from __future__ import annotations

from .. import nn
from ._common import head, ready


def _conv(dims):
    return nn.Conv2d if dims == 2 else nn.Conv1d


def _bn(dims):
    return nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d


def conv_bn_relu(in_channels, out_channels, kernel_size=3, stride=1, padding=None, dims=2, batchnorm=True):
    """Conv -> BatchNorm -> ReLU (the BN+ReLU pair runs as one fused kernel inside Sequential).
    padding defaults to kernel_size // 2 ("same" for odd kernels at stride 1). Without batchnorm
    the convolution keeps its bias."""
    padding = kernel_size // 2 if padding is None else padding
    conv = _conv(dims)(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=not batchnorm)
    if batchnorm:
        return nn.Sequential(conv, _bn(dims)(out_channels), nn.ReLU())
    return nn.Sequential(conv, nn.ReLU())


class BasicBlock(nn.Sequential):
    """ResNet's basic block: relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)), 3x3 convolutions.

    The shortcut is the identity when the shape is kept, else a projection (1x1 conv with the
    block's stride + BN). Built as Sequential(Residual(block, shortcut), ReLU).
    """

    def __init__(self, in_channels, out_channels, stride=1, dims=2):
        conv, bn = _conv(dims), _bn(dims)
        block = nn.Sequential(
            conv(in_channels, out_channels, 3, stride=stride, padding=1, bias=False), bn(out_channels), nn.ReLU(),
            conv(out_channels, out_channels, 3, stride=1, padding=1, bias=False), bn(out_channels))
        shortcut = None
        if stride != 1 or in_channels != out_channels:
            shortcut = nn.Sequential(conv(in_channels, out_channels, 1, stride=stride, bias=False), bn(out_channels))
        super().__init__(nn.Residual(block, shortcut), nn.ReLU())


class InceptionBlock(nn.Concat):
    """GoogLeNet-style block: four branches on the same input, concatenated on channels --
    1x1; 1x1 -> 3x3; 1x1 -> 5x5; 3x3 max-pool (stride 1) -> 1x1 projection. Every convolution is
    conv-BN-ReLU. Output channels: c1 + c3 + c5 + pool_proj."""

    def __init__(self, in_channels, c1, c3_reduce, c3, c5_reduce, c5, pool_proj, dims=2):
        pool = nn.MaxPool2d if dims == 2 else nn.MaxPool1d
        super().__init__(
            conv_bn_relu(in_channels, c1, 1, dims=dims),
            nn.Sequential(conv_bn_relu(in_channels, c3_reduce, 1, dims=dims), conv_bn_relu(c3_reduce, c3, 3, dims=dims)),
            nn.Sequential(conv_bn_relu(in_channels, c5_reduce, 1, dims=dims), conv_bn_relu(c5_reduce, c5, 5, dims=dims)),
            nn.Sequential(pool(3, stride=1, padding=1), conv_bn_relu(in_channels, pool_proj, 1, dims=dims)),
            dim=1)
        self.out_channels = c1 + c3 + c5 + pool_proj


class CNN1d(nn.Sequential):
    """1-D CNN for MNIST-1D-like signals (N, in_channels, length):
    [conv5-conv5-maxpool2] x 2 with (channels[0], channels[1]) filters, conv3 with channels[2],
    global average pooling, dropout, linear. ``batchnorm=False`` gives biased convs + ReLU.
    """

    def __init__(self, in_channels=1, num_classes=10, channels=(32, 64, 128), batchnorm=True, dropout=0.2):
        c1, c2, c3 = channels
        layers = [conv_bn_relu(in_channels, c1, 5, dims=1, batchnorm=batchnorm),
                  conv_bn_relu(c1, c1, 5, dims=1, batchnorm=batchnorm),
                  nn.MaxPool1d(2),
                  conv_bn_relu(c1, c2, 3, dims=1, batchnorm=batchnorm),
                  conv_bn_relu(c2, c2, 3, dims=1, batchnorm=batchnorm),
                  nn.MaxPool1d(2),
                  conv_bn_relu(c2, c3, 3, dims=1, batchnorm=batchnorm),
                  nn.GlobalAvgPool1d()]
        super().__init__(*head(layers, dropout, c3, num_classes))
        ready(self)


class SmallResNet(nn.Sequential):
    """The small ResNet of benchmarks/bench_resnet.py: conv 3x3 in->w0 (BN, ReLU), basic block w0, 2x2
    max-pool, conv 3x3 w0->w1 (BN, ReLU), basic block w1, global average pool, dropout, linear.
    Works on any input size >= 2x2, e.g. (N, 3, 32, 32) or 8x8 digits as (N, 1, 8, 8)."""

    def __init__(self, in_channels=3, num_classes=10, widths=(32, 64), dropout=0.2):
        w0, w1 = widths
        layers = [conv_bn_relu(in_channels, w0, 3), BasicBlock(w0, w0), nn.MaxPool2d(2),
                  conv_bn_relu(w0, w1, 3), BasicBlock(w1, w1), nn.GlobalAvgPool2d()]
        super().__init__(*head(layers, dropout, w1, num_classes))
        ready(self)


class SmallInception(nn.Sequential):
    """A small Inception net: conv 3x3 in->32 (BN, ReLU), Inception block (-> 64 channels), 2x2
    max-pool, Inception block (-> 128 channels), global average pool, dropout, linear."""

    def __init__(self, in_channels=3, num_classes=10, dropout=0.2):
        a = InceptionBlock(32, 16, 16, 24, 8, 12, 12)
        b = InceptionBlock(a.out_channels, 32, 32, 48, 16, 24, 24)
        layers = [conv_bn_relu(in_channels, 32, 3), a, nn.MaxPool2d(2), b, nn.GlobalAvgPool2d()]
        super().__init__(*head(layers, dropout, b.out_channels, num_classes))
        ready(self)


__all__ = ["BasicBlock", "CNN1d", "InceptionBlock", "SmallInception", "SmallResNet", "conv_bn_relu"]
