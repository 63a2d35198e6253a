"""Conv2d forward+backward: fusetrain's kernels vs the same layer on the NumPy twins vs PyTorch CPU,
ratios from one run, each shape validated against the twin first; rows appended to conv.csv."""
from __future__ import annotations

import numpy as np

from common import Table, check_twin, layer_outputs, layer_step, parse_args, timeit, torch_step, try_torch
from fusetrain import nn
from fusetrain.backend import use_backend

CONV_SHAPES = [  # (N, C, H, W, OC, k, padding)
    (128, 32, 32, 32, 32, 3, 1),
    (128, 64, 16, 16, 64, 3, 1),
    (128, 3, 32, 32, 32, 3, 1),
]


def main():
    args = parse_args(__doc__, repeats=5)
    torch = try_torch()
    table = Table("conv", "conv2d fwd+bwd")
    rng = np.random.default_rng(0)
    R = dict(repeats=args.repeats, warmup=1)
    for N, C, H, W, OC, k, p in CONV_SHAPES:
        shape = f"x=({N},{C},{H},{W}) w=({OC},{C},{k},{k}) pad={p}"
        x = rng.standard_normal((N, C, H, W)).astype(np.float32)
        layer = nn.Conv2d(C, OC, k, padding=p, bias=False)
        dy = rng.standard_normal((N, OC, H, W)).astype(np.float32)
        # Weight gradients sum N*H*W products (magnitudes in the thousands): hence the absolute tolerance.
        check_twin(f"conv2d {shape}", layer_outputs(layer, x, dy), rtol=1e-4, atol=1e-2)
        fused = timeit(layer_step(layer, x, dy), **R)
        with use_backend("numpy"):
            numpy_ms = timeit(layer_step(layer, x, dy), **R)
        torch_ms = None
        if torch is not None:
            tconv = torch.nn.Conv2d(C, OC, k, padding=p, bias=False)
            torch_ms = timeit(torch_step(torch, tconv, x, dy), **R)
        table.add("fused", shape, fused, numpy_ms=numpy_ms[0], torch_ms=None if torch_ms is None else torch_ms[0])
        table.add("numpy", shape, numpy_ms)
        if torch_ms is not None:
            table.add("torch", shape, torch_ms)
    table.print()
    print("wrote", table.save())


if __name__ == "__main__":
    main()
