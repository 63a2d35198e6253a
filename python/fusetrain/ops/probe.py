"""Bandwidth probes: a plain copy and a STREAM triad, for benchmarks' roofline ratios."""
from __future__ import annotations

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
