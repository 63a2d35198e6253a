"""The NumPy twin of every fused op, in one place.

Each twin follows the same definition as its kernel (which follows PyTorch's), works in the
dtype it is given (float32 for the NumPy baseline, float64 as the test oracle) and updates
in-place targets in place. They are written for clarity and reasonable NumPy speed.
"""
from __future__ import annotations

import math

import numpy as np

# ---------------------------------------------------------------- optimizers


def sgd_step(p, g, buf, *, lr, momentum, dampening, weight_decay, nesterov, first_step, grad_scale):
    d = g * grad_scale if grad_scale != 1.0 else g.copy()
    if weight_decay:
        d += weight_decay * p
    if momentum:
        if first_step:
            buf[...] = d
        else:
            buf *= momentum
            buf += (1.0 - dampening) * d
        d = d + momentum * buf if nesterov else buf
    p -= lr * d


def adagrad_step(p, g, state_sum, *, clr, weight_decay, eps, grad_scale):
    d = g * grad_scale
    if weight_decay:
        d += weight_decay * p
    state_sum += d * d
    p -= clr * d / (np.sqrt(state_sum) + eps)


def rmsprop_step(p, g, sq, gavg, buf, *, lr, alpha, eps, weight_decay, momentum, grad_scale):
    d = g * grad_scale
    if weight_decay:
        d += weight_decay * p
    sq *= alpha
    sq += (1.0 - alpha) * d * d
    if gavg is not None:
        gavg += (1.0 - alpha) * (d - gavg)
        avg = np.sqrt(sq - gavg * gavg) + eps
    else:
        avg = np.sqrt(sq) + eps
    if momentum > 0:
        buf *= momentum
        buf += d / avg
        p -= lr * buf
    else:
        p -= lr * d / avg


def adam_step(p, g, m, v, vmax, *, lr, beta1, beta2, eps, weight_decay, decoupled, step, grad_scale):
    d = g * grad_scale
    if weight_decay:
        if decoupled:
            p *= 1.0 - lr * weight_decay
        else:
            d += weight_decay * p
    m += (1.0 - beta1) * (d - m)
    v *= beta2
    v += (1.0 - beta2) * d * d
    if vmax is not None:
        np.maximum(vmax, v, out=vmax)
        v = vmax
    bc1 = 1.0 - beta1**step
    bc2_sqrt = math.sqrt(1.0 - beta2**step)
    p -= (lr / bc1) * m / (np.sqrt(v) / bc2_sqrt + eps)


def ema_update(avg, p, decay):
    avg += (1.0 - decay) * (p - avg)


# ---------------------------------------------------------------- norms and clipping


def pow_sum(x, norm_type):
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size == 0:
        return 0.0
    if math.isinf(norm_type):
        return float(np.max(np.abs(x)))
    if norm_type == 2.0:
        return float(np.dot(x, x))
    return float(np.sum(np.abs(x) ** norm_type))


def global_norm(arrays, norm_type=2.0):
    sums = [pow_sum(a, norm_type) for a in arrays]
    if math.isinf(norm_type):
        return max(sums, default=0.0)
    total = sum(sums)
    return total ** (1.0 / norm_type)


# ---------------------------------------------------------------- batch / layer norm


def batchnorm_forward(x3, w, b, running_mean, running_var, *, training, momentum, eps, relu,
                      dropout_keep=None, dropout_p=0.0):
    """x3: (N, C, S). Returns y, mean, invstd (per channel)."""
    N, C, S = x3.shape
    if training:
        mean = x3.mean(axis=(0, 2))
        var = x3.var(axis=(0, 2))
        n = N * S
        if running_mean is not None:
            running_mean *= 1.0 - momentum
            running_mean += momentum * mean
            running_var *= 1.0 - momentum
            running_var += momentum * var * (n / (n - 1))
    else:
        mean, var = running_mean, running_var
    invstd = 1.0 / np.sqrt(var + eps)
    y = (x3 - mean[None, :, None]) * invstd[None, :, None]
    if w is not None:
        y = y * w[None, :, None] + b[None, :, None]
    if relu:
        y = np.maximum(y, 0)
    if dropout_keep is not None:
        y = y * dropout_keep.reshape(y.shape) / (1.0 - dropout_p)
    return y.astype(x3.dtype, copy=False), mean.astype(x3.dtype), invstd.astype(x3.dtype)


def batchnorm_backward(dy3, x3, y3, w, mean, invstd, *, training, relu, dropout_scale=1.0):
    N, C, S = x3.shape
    if relu:
        dy3 = np.where(y3 <= 0, 0, dy3 * dropout_scale)
    xhat = (x3 - mean[None, :, None]) * invstd[None, :, None]
    db = dy3.sum(axis=(0, 2))
    dw = (dy3 * xhat).sum(axis=(0, 2))
    wv = w if w is not None else np.ones(C, dtype=x3.dtype)
    if training:
        n = N * S
        dx = (wv * invstd)[None, :, None] / n * (n * dy3 - db[None, :, None] - xhat * dw[None, :, None])
    else:
        dx = dy3 * (wv * invstd)[None, :, None]
    return dx.astype(x3.dtype, copy=False), dw, db


def layernorm_forward(x2, w, b, eps):
    mean = x2.mean(axis=1)
    var = x2.var(axis=1)
    rstd = 1.0 / np.sqrt(var + eps)
    y = (x2 - mean[:, None]) * rstd[:, None]
    if w is not None:
        y = y * w + b
    return y.astype(x2.dtype, copy=False), mean.astype(x2.dtype), rstd.astype(x2.dtype)


def layernorm_backward(dy2, x2, w, mean, rstd):
    D = x2.shape[1]
    xhat = (x2 - mean[:, None]) * rstd[:, None]
    dw = (dy2 * xhat).sum(axis=0)
    db = dy2.sum(axis=0)
    g = dy2 * w if w is not None else dy2
    dx = rstd[:, None] / D * (D * g - g.sum(axis=1, keepdims=True) - xhat * (g * xhat).sum(axis=1, keepdims=True))
    return dx.astype(x2.dtype, copy=False), dw, db


# ---------------------------------------------------------------- Philox and dropout

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_LO = np.uint64(0xFFFFFFFF)


def philox4x32_10(counters, key):
    """counters: (n, 4) uint32; key: (k0, k1) ints. Returns (n, 4) uint32 (Random123's philox4x32-10)."""
    c = [counters[:, i].astype(np.uint64) for i in range(4)]
    k0, k1 = int(key[0]) & 0xFFFFFFFF, int(key[1]) & 0xFFFFFFFF
    s32 = np.uint64(32)
    for _ in range(10):
        p0 = _M0 * c[0]
        p1 = _M1 * c[2]
        c = [(p1 >> s32) ^ c[1] ^ np.uint64(k0), p1 & _LO, (p0 >> s32) ^ c[3] ^ np.uint64(k1), p0 & _LO]
        k0 = (k0 + _W0) & 0xFFFFFFFF
        k1 = (k1 + _W1) & 0xFFFFFFFF
    return np.stack([x.astype(np.uint32) for x in c], axis=1)


def dropout_threshold(p):
    return math.ceil(p * 16777216.0)


def dropout_keep(n, p, seed, offset):
    """Boolean keep-mask of n elements, the same bits the kernels draw for (seed, offset)."""
    if n == 0:
        return np.zeros(0, dtype=bool)
    first, last = offset // 4, (offset + n - 1) // 4
    blocks = np.arange(first, last + 1, dtype=np.uint64)
    ctr = np.zeros((blocks.size, 4), dtype=np.uint32)
    ctr[:, 0] = (blocks & _LO).astype(np.uint32)
    ctr[:, 1] = (blocks >> np.uint64(32)).astype(np.uint32)
    words = philox4x32_10(ctr, (seed & 0xFFFFFFFF, seed >> 32)).ravel()
    start = offset - first * 4
    words = words[start:start + n]
    return (words >> np.uint32(8)) >= np.uint32(dropout_threshold(p))


_ACTS = ("identity", "relu", "leaky_relu", "tanh", "sigmoid")


def activation(z, act, slope=0.01):
    if act == "identity":
        return z
    if act == "relu":
        return np.maximum(z, 0)
    if act == "leaky_relu":
        return np.where(z > 0, z, z * slope)
    if act == "tanh":
        return np.tanh(z)
    if act == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    raise ValueError(f"act must be one of {_ACTS}, got {act!r}")


def activation_grad_from_output(a, act, slope=0.01):
    """d act / d z written in terms of a = act(z)."""
    if act == "identity":
        return np.ones_like(a)
    if act == "relu":
        return (~(a <= 0)).astype(a.dtype)
    if act == "leaky_relu":
        return np.where(a > 0, 1.0, slope).astype(a.dtype)
    if act == "tanh":
        return 1.0 - a * a
    if act == "sigmoid":
        return a * (1.0 - a)
    raise ValueError(f"act must be one of {_ACTS}, got {act!r}")


def bias_act_dropout_forward(x, bias, *, act, slope, p, seed, offset):
    z = x + bias if bias is not None else x
    a = activation(z, act, slope)
    if p > 0:
        keep = dropout_keep(x.size, p, seed, offset).reshape(x.shape)
        a = np.where(keep, a * (1.0 / (1.0 - p)), 0)
    return a.astype(x.dtype, copy=False)


def bias_act_dropout_backward(dy, y, *, act, slope, p, seed, offset):
    """Returns (dx, dbias): dbias is the column sum of dx over all leading axes."""
    if p > 0:
        keep = dropout_keep(y.size, p, seed, offset).reshape(y.shape)
        scale = 1.0 / (1.0 - p)
        a = np.where(keep, y / scale, 0)
        dx = np.where(keep, dy * scale * activation_grad_from_output(a, act, slope), 0)
    else:
        dx = dy * activation_grad_from_output(y, act, slope)
    dx = dx.astype(dy.dtype, copy=False)
    dbias = dx.reshape(int(np.prod(dx.shape[:-1])), dx.shape[-1]).sum(axis=0) if dx.ndim else dx
    return dx, dbias


# ---------------------------------------------------------------- loss


def softmax_cross_entropy(logits, labels, *, reduction="mean"):
    """Returns (loss, dlogits) for integer labels; 'mean' or 'sum' reduction."""
    N = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    logp = z - np.log(s)
    total = -float(logp[np.arange(N), labels].sum()) if N else 0.0
    grad = e / s
    grad[np.arange(N), labels] -= 1.0
    if reduction == "mean":
        if N == 0:
            return float("nan"), grad
        grad /= N
        return total / N, grad.astype(logits.dtype, copy=False)
    return total, grad.astype(logits.dtype, copy=False)


# ---------------------------------------------------------------- convolution and pooling
# Images are (N, C, H, W); 1-D ops are the 2-D ones with H = 1. The column matrix has the same
# layout as the C++ kernels': (C*KH*KW, N*OH*OW), row (c, kh, kw), column (n, oh, ow). Python
# loops run over kernel offsets or output bins only, never over pixels, channels or samples.


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
