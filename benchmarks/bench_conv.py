"""Conv2d forward+backward and pooling forward+backward: fusetrain's kernels vs the same ops on the
NumPy twins vs PyTorch CPU, ratios from one run; rows appended to results/conv.csv."""
from __future__ import annotations

import argparse

import numpy as np

from common import Table, timeit, try_torch
from fusetrain import nn
from fusetrain.backend import use_backend

CONV_SHAPES = [  # (N, C, H, W, OC, k, padding)
    (128, 32, 32, 32, 32, 3, 1),
    (128, 64, 16, 16, 64, 3, 1),
    (128, 3, 32, 32, 32, 3, 1),
]
POOL_SHAPES = [(128, 32, 32, 32), (128, 64, 16, 16)]


def _layer_step(layer, x, dy):
    def step():
        layer(x)
        layer.backward(dy)
    return step


def _torch_step(torch, module, x, dy):
    tx = torch.tensor(x, requires_grad=True)
    tdy = torch.tensor(dy)

    def step():
        tx.grad = None
        module.zero_grad(set_to_none=True)
        module(tx).backward(tdy)
    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch = try_torch()
    table = Table("conv", "conv2d fwd+bwd")
    rng = np.random.default_rng(0)
    R = dict(repeats=args.repeats, warmup=1)
    for N, C, H, W, OC, k, p in CONV_SHAPES:
        shape = f"x=({N},{C},{H},{W}) w=({OC},{C},{k},{k}) pad={p}"
        x = rng.standard_normal((N, C, H, W)).astype(np.float32)
        layer = nn.Conv2d(C, OC, k, padding=p, bias=False)
        dy = rng.standard_normal((N, OC, H, W)).astype(np.float32)
        fused = timeit(_layer_step(layer, x, dy), **R)
        with use_backend("numpy"):
            numpy_ms = timeit(_layer_step(layer, x, dy), **R)
        torch_ms = None
        if torch is not None:
            tconv = torch.nn.Conv2d(C, OC, k, padding=p, bias=False)
            torch_ms = timeit(_torch_step(torch, tconv, x, dy), **R)
        table.add("fused", shape, fused, numpy_ms=numpy_ms[0], torch_ms=None if torch_ms is None else torch_ms[0])
        table.add("numpy", shape, numpy_ms)
        if torch_ms is not None:
            table.add("torch", shape, torch_ms)
    table.bench = "pool fwd+bwd"
    for N, C, H, W in POOL_SHAPES:
        x = rng.standard_normal((N, C, H, W)).astype(np.float32)
        dy = rng.standard_normal((N, C, H // 2, W // 2)).astype(np.float32)
        for name, layer, tmod in (("maxpool 2x2", nn.MaxPool2d(2), "MaxPool2d"),
                                  ("avgpool 3x3 s2 p1", nn.AvgPool2d(3, 2, 1), "AvgPool2d")):
            shape = f"{name} x=({N},{C},{H},{W})"
            fused = timeit(_layer_step(layer, x, dy), **R)
            with use_backend("numpy"):
                numpy_ms = timeit(_layer_step(layer, x, dy), **R)
            torch_ms = None
            if torch is not None:
                tm = torch.nn.MaxPool2d(2) if tmod == "MaxPool2d" else torch.nn.AvgPool2d(3, 2, 1)
                torch_ms = timeit(_torch_step(torch, tm, x, dy), **R)
            # bytes the op must move: read x, write y, read dy, write dx
            nbytes = 4 * 2 * (x.size + dy.size)
            table.add("fused", shape, fused, nbytes=nbytes, numpy_ms=numpy_ms[0],
                      torch_ms=None if torch_ms is None else torch_ms[0])
            table.add("numpy", shape, numpy_ms, nbytes=nbytes)
            if torch_ms is not None:
                table.add("torch", shape, torch_ms, nbytes=nbytes)
    table.print()
    print("wrote", table.save())


if __name__ == "__main__":
    main()
