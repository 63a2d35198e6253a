"""NumPy twin of the convolution: im2col + numpy.matmul.

Images are (N, C, H, W); 1-D ops are the 2-D ones with H = 1. The column matrix has the same
layout as the kernels': (C*KH*KW, N*OH*OW), row (c, kh, kw), column (n, oh, ow). Python loops run
over kernel offsets only, never over pixels, channels or samples."""
from __future__ import annotations

import numpy as np


def window_out(size, k, s, p, d):
    """PyTorch's output length of a sliding window: floor((size + 2p - d(k-1) - 1) / s) + 1."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _tap(xp, kh, kw, OH, OW, stride, dilation):
    """The (.., OH, OW) view of padded planes xp read by kernel offset (kh, kw)."""
    sh, sw = stride
    h0, w0 = kh * dilation[0], kw * dilation[1]
    return xp[..., h0:h0 + sh * (OH - 1) + 1:sh, w0:w0 + sw * (OW - 1) + 1:sw]


def im2col2d(x, kernel, stride, padding, dilation):
    N, C, H, W = x.shape
    (KH, KW), (ph, pw) = kernel, padding
    OH = window_out(H, KH, stride[0], ph, dilation[0])
    OW = window_out(W, KW, stride[1], pw, dilation[1])
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    col = np.empty((C, KH, KW, N, OH, OW), x.dtype)
    for kh in range(KH):
        for kw in range(KW):
            col[:, kh, kw] = _tap(xp, kh, kw, OH, OW, stride, dilation).transpose(1, 0, 2, 3)
    return col.reshape(C * KH * KW, N * OH * OW)


def col2im2d(col, x_shape, kernel, stride, padding, dilation):
    N, C, H, W = x_shape
    (KH, KW), (ph, pw) = kernel, padding
    OH = window_out(H, KH, stride[0], ph, dilation[0])
    OW = window_out(W, KW, stride[1], pw, dilation[1])
    c6 = col.reshape(C, KH, KW, N, OH, OW)
    dxp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), col.dtype)
    for kh in range(KH):
        for kw in range(KW):
            _tap(dxp, kh, kw, OH, OW, stride, dilation)[...] += c6[:, kh, kw].transpose(1, 0, 2, 3)
    return dxp[:, :, ph:ph + H, pw:pw + W]


def conv2d_forward(x, w, b, *, stride, padding, dilation, groups):
    """Returns (y, col): y (N, OC, OH, OW) and the column matrix backward needs."""
    N = x.shape[0]
    OC, Cg, KH, KW = w.shape
    col = im2col2d(x, (KH, KW), stride, padding, dilation)
    OH = window_out(x.shape[2], KH, stride[0], padding[0], dilation[0])
    OW = window_out(x.shape[3], KW, stride[1], padding[1], dilation[1])
    G = groups
    y = np.matmul(w.reshape(G, OC // G, Cg * KH * KW), col.reshape(G, Cg * KH * KW, -1))
    y = y.reshape(OC, N, OH, OW).transpose(1, 0, 2, 3)
    if b is not None:
        y = y + b.reshape(1, OC, 1, 1)
    return np.ascontiguousarray(y), col


def conv2d_backward(dy, col, w, x_shape, *, stride, padding, dilation, groups, need_input_grad=True):
    """Returns (dx or None, dw, db) for the forward above."""
    OC, Cg, KH, KW = w.shape
    G = groups
    dyc = dy.transpose(1, 0, 2, 3).reshape(G, OC // G, -1)
    colg = col.reshape(G, Cg * KH * KW, -1)
    dw = np.matmul(colg, dyc.transpose(0, 2, 1)).transpose(0, 2, 1).reshape(w.shape)
    db = dy.sum(axis=(0, 2, 3))
    dx = None
    if need_input_grad:
        dcol = np.matmul(w.reshape(G, OC // G, -1).transpose(0, 2, 1), dyc).reshape(col.shape)
        dx = col2im2d(dcol, x_shape, (KH, KW), stride, padding, dilation)
    return dx, dw, db
