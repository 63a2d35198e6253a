"""Gradient-norm ops over ~18.9 M values in 26 tensors (bench_optim.py's arena): clipping by global
norm (global_norm, clip_coef, scale_) vs torch.nn.utils.clip_grad_norm_ (foreach) and the NumPy
twin, and the non-finite count the Trainer makes each step; bandwidth against the copy probe. Each
op is first validated against the twin.

    python benchmarks/bench_norm.py [--repeats N]
"""
from __future__ import annotations

import numpy as np

from common import Table, add_rows, check_twin, parse_args, probe_gbps, timeit_round_robin, try_torch
from fusetrain import ops
from fusetrain.backend import use_backend

SIZES = [1024 * 1419] * 13 + [1419] * 13
MAX_NORM = 1.0


def clip(grads):
    ops.scale_(grads, ops.clip_coef(ops.global_norm(grads), MAX_NORM))


def main():
    args = parse_args(__doc__, repeats=15)
    torch = try_torch()
    table = Table("norm", "norm", probe=probe_gbps()["copy"])
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(s).astype(np.float32) for s in SIZES]
    n = sum(SIZES)
    shape = f"{n / 1e6:.2f}M values / {len(SIZES)} tensors"

    def clipped():
        copies = [g.copy() for g in grads]
        out = {"norm": np.float64(ops.global_norm(copies))}
        clip(copies)
        out.update({f"grads[{i}]": g for i, g in enumerate(copies)})
        return out

    def counted():
        copies = [g.copy() for g in grads[:2]]
        copies[0][::1000] = np.nan
        copies[1][7] = -np.inf
        return {"count": np.int64(ops.count_nonfinite(copies))}

    check_twin("clip by global norm", clipped, rtol=1e-6, atol=0)
    check_twin("count_nonfinite", counted, rtol=0, atol=0)

    def twin(fn):
        def run():
            with use_backend("numpy"):
                fn()
        return run

    tparams = []
    if torch is not None:
        for g in grads:
            tparams.append(torch.nn.Parameter(torch.empty(g.shape)))
            tparams[-1].grad = torch.from_numpy(g.copy())
    # Clipping reads every gradient twice (norm, scale) and writes it once; counting reads it once.
    jobs = {"clip_grad_norm": (lambda: clip(grads), 12 * n), "count_nonfinite": (lambda: ops.count_nonfinite(grads),
                                                                                 4 * n)}
    for bench, (fn, nbytes) in jobs.items():
        fns = {"numpy twin": twin(fn), "fusetrain": fn}
        if torch is not None and bench == "clip_grad_norm":
            fns["torch"] = lambda: torch.nn.utils.clip_grad_norm_(tparams, MAX_NORM, foreach=True)
        elif torch is not None:
            fns["torch"] = lambda: sum(int((~torch.isfinite(p.grad)).sum()) for p in tparams)
        table.bench = bench
        add_rows(table, shape, timeit_round_robin(fns, repeats=args.repeats), nbytes=nbytes)
    table.print()
    print("saved", table.save())


if __name__ == "__main__":
    main()
