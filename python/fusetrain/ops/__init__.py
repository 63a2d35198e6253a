"""One function per fused op. Each validates its arguments, then runs the C++ kernel (numpy
arrays), the CUDA kernel (cupy arrays) or the NumPy twin (``fusetrain.backend.set_backend("numpy")``).
Where each op lives at every layer, and how to add one: docs/architecture.md."""
from __future__ import annotations

from . import numpy_ref  # noqa: F401  (the twins: baseline and float64 test oracle)
from .batchnorm import batchnorm_backward, batchnorm_forward
from .conv import (conv1d_backward, conv1d_buffer_shapes, conv1d_forward, conv2d_backward, conv2d_buffer_shapes,
                   conv2d_forward)
from .dropout import (ACTIVATIONS, bias_act_dropout_backward, bias_act_dropout_forward, dropout_backward,
                      dropout_forward, dropout_mask, mask_bits_size)
from .gemm import matmul
from .layernorm import layernorm_backward, layernorm_forward
from .loss import mse_loss, softmax_cross_entropy
from .norm import CLIP_EPS, clamp_, clip_coef, count_nonfinite, global_norm, scale_
from .optim import adagrad_step, adam_step, ema_update, rmsprop_step, sgd_step
from .pooling import (adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward, avg_pool1d_backward,
                      avg_pool1d_forward, avg_pool2d_backward, avg_pool2d_forward, max_pool1d_backward,
                      max_pool1d_forward, max_pool2d_backward, max_pool2d_forward)
from .probe import probe_copy, probe_fma, probe_triad, probe_update

__all__ = [
    "ACTIVATIONS", "CLIP_EPS", "adagrad_step", "adam_step", "batchnorm_backward", "batchnorm_forward",
    "bias_act_dropout_backward", "bias_act_dropout_forward", "clamp_", "clip_coef", "count_nonfinite",
    "dropout_backward", "dropout_forward", "dropout_mask", "ema_update", "global_norm", "layernorm_backward",
    "layernorm_forward", "mask_bits_size", "matmul", "mse_loss", "probe_copy", "probe_fma", "probe_triad",
    "probe_update", "rmsprop_step", "scale_", "sgd_step", "softmax_cross_entropy",
    "adaptive_avg_pool2d_backward", "adaptive_avg_pool2d_forward", "avg_pool1d_backward", "avg_pool1d_forward",
    "avg_pool2d_backward", "avg_pool2d_forward", "conv1d_backward", "conv1d_buffer_shapes", "conv1d_forward",
    "conv2d_backward", "conv2d_buffer_shapes",
    "conv2d_forward", "max_pool1d_backward", "max_pool1d_forward", "max_pool2d_backward", "max_pool2d_forward",
]
