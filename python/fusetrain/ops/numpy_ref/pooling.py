"""NumPy twins of max, average and adaptive average pooling over (P, H, W) planes; Python loops
run over kernel offsets or output bins only."""
from __future__ import annotations

import numpy as np

from .conv import _tap, window_out


def _pool_taps(x3, kernel, stride, padding, dilation, fill):
    """(K, P, OH, OW) stack of every kernel offset's view of planes x3 (P, H, W) padded with fill."""
    P, H, W = x3.shape
    (KH, KW), (ph, pw) = kernel, padding
    OH = window_out(H, KH, stride[0], ph, dilation[0])
    OW = window_out(W, KW, stride[1], pw, dilation[1])
    xp = np.pad(x3, ((0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    taps = np.stack([_tap(xp, kh, kw, OH, OW, stride, dilation) for kh in range(KH) for kw in range(KW)])
    return taps, OH, OW


def max_pool2d_forward(x3, kernel, stride, padding, dilation):
    """Max over each window of planes x3 (P, H, W). Returns (y, idx): idx is the flat position
    ih*W + iw of the first maximum among the window's pixels (a NaN counts as the maximum), or -1
    for a window wholly in the padding (y = -inf there)."""
    P, H, W = x3.shape
    taps, OH, OW = _pool_taps(x3, kernel, stride, padding, dilation, -np.inf)
    inside = _pool_taps(np.ones((1, H, W), bool), kernel, stride, padding, dilation, False)[0]
    k = np.argmax(taps, axis=0)
    y = np.take_along_axis(taps, k[None], axis=0)[0]
    # A window whose maximum is -inf points at its first pixel, as the kernels' scan does (argmax
    # may have named a padding tap before it).
    k = np.where(y == -np.inf, np.argmax(inside, axis=0), k)
    KW = kernel[1]
    oh = np.arange(OH).reshape(1, OH, 1)
    ow = np.arange(OW).reshape(1, 1, OW)
    ih = oh * stride[0] - padding[0] + (k // KW) * dilation[0]
    iw = ow * stride[1] - padding[1] + (k % KW) * dilation[1]
    idx = np.where(inside.any(axis=0), ih * W + iw, -1)
    return y, idx.astype(np.int32)


def max_pool2d_backward(dy3, idx, in_hw):
    """dx (P, H, W): each dy routed to its argmax, summed where windows share a maximum; an index
    of -1 (a window wholly in the padding) routes nowhere."""
    P = dy3.shape[0]
    H, W = in_hw
    dx = np.zeros((P, H * W), dy3.dtype)
    idx = idx.reshape(P, int(np.prod(dy3.shape[1:])))
    rows = np.broadcast_to(np.arange(P).reshape(P, 1), idx.shape)
    keep = idx >= 0
    np.add.at(dx, (rows[keep], idx[keep]), dy3.reshape(idx.shape)[keep])
    return dx.reshape(P, H, W)


def _avg_divisor(in_hw, kernel, stride, padding, out_hw, count_include_pad):
    """(OH, OW) divisors: window size clipped to the padded input, or its count of real pixels."""
    def axis(size, k, s, p, o):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, size + p)
        padded = end - start
        real = np.minimum(end, size) - np.maximum(start, 0)
        return padded, real
    ph_, rh = axis(in_hw[0], kernel[0], stride[0], padding[0], out_hw[0])
    pw_, rw = axis(in_hw[1], kernel[1], stride[1], padding[1], out_hw[1])
    return np.outer(ph_, pw_) if count_include_pad else np.outer(rh, rw)


def avg_pool2d_forward(x3, kernel, stride, padding, count_include_pad):
    taps, OH, OW = _pool_taps(x3, kernel, stride, padding, (1, 1), 0)
    div = _avg_divisor(x3.shape[1:], kernel, stride, padding, (OH, OW), count_include_pad)
    return (taps.sum(axis=0) / div).astype(x3.dtype, copy=False)


def avg_pool2d_backward(dy3, in_hw, kernel, stride, padding, count_include_pad):
    P, OH, OW = dy3.shape
    H, W = in_hw
    (KH, KW), (ph, pw) = kernel, padding
    g = (dy3 / _avg_divisor(in_hw, kernel, stride, padding, (OH, OW), count_include_pad)).astype(dy3.dtype)
    dxp = np.zeros((P, H + 2 * ph, W + 2 * pw), dy3.dtype)
    for kh in range(KH):
        for kw in range(KW):
            _tap(dxp, kh, kw, OH, OW, stride, (1, 1))[...] += g
    return dxp[:, ph:ph + H, pw:pw + W]


def _adaptive_matrix(size, out, dtype):
    """(out, size) averaging matrix: row i averages [floor(i*size/out), ceil((i+1)*size/out))."""
    i = np.arange(out)
    start = (i * size) // out
    end = -((-(i + 1) * size) // out)
    j = np.arange(size)
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return (inside / np.maximum(end - start, 1)[:, None]).astype(dtype)


def adaptive_avg_pool2d_forward(x3, out_hw):
    Ah = _adaptive_matrix(x3.shape[1], out_hw[0], x3.dtype)
    Aw = _adaptive_matrix(x3.shape[2], out_hw[1], x3.dtype)
    return np.matmul(np.matmul(Ah, x3), Aw.T)


def adaptive_avg_pool2d_backward(dy3, in_hw):
    Ah = _adaptive_matrix(in_hw[0], dy3.shape[1], dy3.dtype)
    Aw = _adaptive_matrix(in_hw[1], dy3.shape[2], dy3.dtype)
    return np.matmul(np.matmul(Ah.T, dy3), Aw)
