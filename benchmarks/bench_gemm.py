"""Matrix products: fusetrain.ops.matmul (the C++ GEMM on fusetrain's register tiles and thread
pool) vs its NumPy twin numpy.matmul (OpenBLAS) vs torch.mm, at the three products of a
Linear(1024, 1024) training step at batch 128 (forward x @ W.T, input gradient dy @ W, weight
gradient dy.T @ x, the transposes read in place) and a square 2048^3. Each product is first
validated against the twin; GFLOP/s printed per product.

    python benchmarks/bench_gemm.py [--repeats N]
"""
from __future__ import annotations

import numpy as np

from common import Table, add_rows, check_twin, parse_args, timeit, try_torch
from fusetrain import ops
from fusetrain.backend import use_backend

B, D, N = 128, 1024, 2048


def operands(rng):
    """{label: (a, b)} for the products timed; a and b may be transposed views."""
    x, w, dy = (rng.standard_normal(s, dtype=np.float32) for s in ((B, D), (D, D), (B, D)))
    sq = rng.standard_normal((N, N), dtype=np.float32)
    return {f"x @ W.T ({B}x{D}x{D})": (x, w.T), f"dy @ W ({B}x{D}x{D})": (dy, w),
            f"dy.T @ x ({D}x{B}x{D})": (dy.T, x), f"square ({N}x{N}x{N})": (sq, sq.T.copy())}


def main():
    args = parse_args(__doc__, repeats=15)
    torch = try_torch()
    table = Table("gemm", "matmul")
    for label, (a, b) in operands(np.random.default_rng(0)).items():
        out = np.empty((a.shape[0], b.shape[1]), np.float32)
        # K-long float32 dot products summed in different orders: the tolerance grows with sqrt(K).
        check_twin(label, lambda a=a, b=b: {"out": ops.matmul(a, b)}, rtol=1e-4, atol=1e-3)

        def twin(a=a, b=b, out=out):
            with use_backend("numpy"):
                ops.matmul(a, b, out)

        fns = {"numpy twin": twin, "fusetrain": lambda a=a, b=b, out=out: ops.matmul(a, b, out)}
        if torch is not None:
            ta, tb, tout = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(out.copy())
            fns["torch"] = lambda ta=ta, tb=tb, tout=tout: torch.mm(ta, tb, out=tout)
        # One implementation after another, not interleaved: torch's and OpenBLAS's workers spin for
        # milliseconds after each product and would slow whichever ran next.
        times = {name: timeit(fn, repeats=args.repeats) for name, fn in fns.items()}
        add_rows(table, label, times)
        flops = 2.0 * a.shape[0] * a.shape[1] * b.shape[1]
        print(f"{label}: " + ", ".join(f"{name} {flops / t[0] / 1e6:.0f} GFLOP/s" for name, t in times.items()))
    table.print()
    print("saved", table.save())


if __name__ == "__main__":
    main()
