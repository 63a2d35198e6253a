"""LayerNorm forward+backward over the last dimension: fusetrain vs its NumPy twin vs
torch.nn.LayerNorm, with bandwidth against the copy probe; each shape validated against the twin
first (output and all gradients).

    python benchmarks/bench_layernorm.py [--repeats N]
"""
from __future__ import annotations

import numpy as np

from common import (Table, add_rows, check_twin, layer_outputs, layer_step, parse_args, probe_gbps,
                    timeit_round_robin, torch_step, try_torch)
from fusetrain import nn
from fusetrain.backend import use_backend

SHAPES = [(4096, 1024), (256, 768), (64, 197, 384)]


def main():
    args = parse_args(__doc__, repeats=20)
    torch = try_torch()
    table = Table("layernorm", "layernorm fwd+bwd", probe=probe_gbps()["copy"])
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        x = rng.standard_normal(shape).astype(np.float32)
        dy = rng.standard_normal(shape).astype(np.float32)
        layer = nn.LayerNorm(shape[-1])
        label = "x".join(map(str, shape))
        check_twin(f"layernorm {label}", layer_outputs(layer, x, dy), rtol=1e-4, atol=1e-3)

        def twin():
            with use_backend("numpy"):
                layer_step(layer, x, dy)()

        fns = {"numpy twin": twin, "fusetrain": layer_step(layer, x, dy)}
        if torch is not None:
            fns["torch"] = torch_step(torch, torch.nn.LayerNorm(shape[-1]), x, dy)
        # forward reads x and writes y; backward reads dy and x, writes dx: 5 passes of 4 bytes
        add_rows(table, label, timeit_round_robin(fns, repeats=args.repeats), nbytes=5 * 4 * x.size)
    table.print()
    print("saved", table.save())


if __name__ == "__main__":
    main()
