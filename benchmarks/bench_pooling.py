"""Pooling forward+backward (max 2x2, average 3x3 stride 2 padding 1, adaptive average to 1x1):
fusetrain's kernels vs the same layers on the NumPy twins vs PyTorch CPU, ratios from one run,
each case validated against the twin first; rows appended to pooling.csv.

    python benchmarks/bench_pooling.py [--repeats N]
"""
from __future__ import annotations

import numpy as np

from common import Table, check_twin, layer_outputs, layer_step, parse_args, timeit, torch_step, try_torch
from fusetrain import nn
from fusetrain.backend import use_backend

SHAPES = [(128, 32, 32, 32), (128, 64, 16, 16)]
CASES = [  # (label, fusetrain layer, torch layer's name and arguments)
    ("max_pool2d 2x2", lambda: nn.MaxPool2d(2), ("MaxPool2d", (2,))),
    ("avg_pool2d 3x3 s2 p1", lambda: nn.AvgPool2d(3, 2, 1), ("AvgPool2d", (3, 2, 1))),
    ("adaptive_avg_pool2d 1x1", lambda: nn.AdaptiveAvgPool2d(1), ("AdaptiveAvgPool2d", (1,))),
]


def main():
    args = parse_args(__doc__, repeats=5)
    torch = try_torch()
    table = Table("pooling", "pool fwd+bwd")
    rng = np.random.default_rng(0)
    R = dict(repeats=args.repeats, warmup=1)
    for N, C, H, W in SHAPES:
        x = rng.standard_normal((N, C, H, W)).astype(np.float32)
        for name, make, (tname, targs) in CASES:
            layer = make()
            dy = rng.standard_normal(layer(x).shape).astype(np.float32)
            shape = f"{name} x=({N},{C},{H},{W})"
            check_twin(shape, layer_outputs(layer, x, dy), rtol=1e-5, atol=1e-6)
            fused = timeit(layer_step(layer, x, dy), **R)
            with use_backend("numpy"):
                numpy_ms = timeit(layer_step(layer, x, dy), **R)
            torch_ms = None
            if torch is not None:
                torch_ms = timeit(torch_step(torch, getattr(torch.nn, tname)(*targs), x, dy), **R)
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
