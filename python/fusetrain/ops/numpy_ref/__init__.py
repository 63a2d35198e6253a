"""The NumPy twin of every fused op, one module per op (numpy_ref/<op>.py beside ops/<op>.py).

Each twin follows the same definition as its kernel (which follows PyTorch's), works in the
dtype it is given (float32 for the NumPy baseline, float64 as the test oracle) and updates
in-place targets in place. They are written for clarity and reasonable NumPy speed.
"""
from __future__ import annotations

from .batchnorm import batchnorm_backward, batchnorm_forward
from .conv import col2im2d, conv2d_backward, conv2d_forward, im2col2d, window_out
from .dropout import (activation, activation_grad_from_output, bias_act_dropout_backward, bias_act_dropout_forward,
                      dropout_keep, dropout_threshold, philox4x32_10)
from .layernorm import layernorm_backward, layernorm_forward
from .loss import mse_loss, softmax_cross_entropy
from .norm import global_norm, pow_sum
from .optim import adagrad_step, adam_step, ema_update, rmsprop_step, sgd_step
from .pooling import (adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward, avg_pool2d_backward, avg_pool2d_forward,
                      max_pool2d_backward, max_pool2d_forward)

__all__ = ["activation", "activation_grad_from_output", "adagrad_step", "adam_step", "adaptive_avg_pool2d_backward",
    "adaptive_avg_pool2d_forward", "avg_pool2d_backward", "avg_pool2d_forward", "batchnorm_backward",
    "batchnorm_forward", "bias_act_dropout_backward", "bias_act_dropout_forward", "col2im2d", "conv2d_backward",
    "conv2d_forward", "dropout_keep", "dropout_threshold", "ema_update", "global_norm", "im2col2d",
    "layernorm_backward", "layernorm_forward", "max_pool2d_backward", "max_pool2d_forward", "mse_loss",
    "philox4x32_10", "pow_sum", "rmsprop_step", "sgd_step", "softmax_cross_entropy", "window_out"]
