"""Probes of the machine's limits for benchmarks' roofline ratios: a plain copy and a STREAM triad
(memory bandwidth), and back-to-back multiply-adds on every kernel thread (compute)."""
from __future__ import annotations

import time

from . import _check as C
from ._dispatch import core


def probe_copy(src, dst):
    """dst = src (8 bytes moved per element)."""
    src = C.array(src, "src")
    dst = C.array(dst, "dst", inplace=True)
    C.same_size(src, "src", dst=dst)
    core().probe_copy(src, dst)


def probe_triad(a, b, c, s):
    """a = b + s*c (12 bytes moved per element)."""
    a = C.array(a, "a", inplace=True)
    b, c = C.array(b, "b"), C.array(c, "c")
    C.same_size(a, "a", b=b, c=c)
    core().probe_triad(a, b, c, float(s))


def probe_update(outs, inp):
    """outs[j] += inp for each of 1..4 outputs: an optimizer's memory streams with trivial math."""
    inp = C.array(inp, "inp")
    outs = [C.array(o, f"outs[{j}]", inplace=True) for j, o in enumerate(outs)]
    C.same_size(inp, "inp", **{f"outs[{j}]": o for j, o in enumerate(outs)})
    if not 1 <= len(outs) <= 4:
        raise ValueError(f"outs must hold 1 to 4 arrays, got {len(outs)}")
    core().probe_update(outs, inp)


def probe_fma(seconds=0.2) -> float:
    """GFLOP/s of float32 multiply-adds on registers, every kernel thread busy for about `seconds`
    (the widest instruction set the kernels use): the compute ceiling of the convolution and GEMM
    kernels. The best of a few runs."""
    seconds = C.number(seconds, "seconds", lo=0.0, lo_open=True)
    iters, best = 1 << 16, 0.0
    while True:  # grow the run until one takes a tenth of the budget
        t0 = time.perf_counter()
        flops = core().probe_fma(iters)
        dt = time.perf_counter() - t0
        if dt >= seconds / 10:
            break
        iters *= 4
    end = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        flops = core().probe_fma(iters)
        best = max(best, flops / (time.perf_counter() - t0) / 1e9)
        if time.perf_counter() >= end:
            return best
