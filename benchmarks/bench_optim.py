"""Optimizer steps over ~18.9 M params in 26 tensors (PERFORMANCE.md's anchor): fusetrain's fused
update over one arena vs its NumPy twin, torch.optim (for-loop, foreach, fused) and a probe with
the same memory streams. Also clip-by-global-norm folded into AdamW vs AdamW alone.

    python benchmarks/bench_optim.py [--repeats N]
"""
from __future__ import annotations

import argparse

import numpy as np

from common import Table, probe_gbps, timeit, try_torch
from fusetrain import ops
from fusetrain.backend import use_backend

SIZES = [1024 * 1419] * 13 + [1419] * 13  # 18.91 M params in 26 tensors
BYTES = {"adam": 28, "adamw": 28, "sgd_momentum": 20, "clip+adamw": 32}
PROBE_OUTS = {"adam": 3, "adamw": 3, "sgd_momentum": 2, "clip+adamw": 3}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    n = sum(SIZES)
    rng = np.random.default_rng(0)
    p = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32) * 0.01
    m = np.zeros(n, np.float32)
    v = np.zeros(n, np.float32)
    torch = try_torch()
    probe = probe_gbps()
    print(f"bandwidth probes: copy {probe['copy']:.1f} GB/s, triad {probe['triad']:.1f} GB/s")
    table = Table("optim", "optimizer step", probe=None)
    shape = f"{n / 1e6:.2f}M params / 26 tensors"
    R = args.repeats

    def stream_probe(kind):
        outs = [np.zeros(n, np.float32) for _ in range(PROBE_OUTS[kind])]
        return timeit(lambda: ops.probe_update(outs, g), repeats=R)

    steps = {
        "adam": lambda: ops.adam_step(p, g, m, v, lr=1e-3, weight_decay=0.0, step=10),
        "adamw": lambda: ops.adam_step(p, g, m, v, lr=1e-3, weight_decay=1e-2, decoupled=True, step=10),
        "sgd_momentum": lambda: ops.sgd_step(p, g, m, lr=1e-2, momentum=0.9),
        "clip+adamw": lambda: ops.adam_step(p, g, m, v, lr=1e-3, weight_decay=1e-2, decoupled=True, step=10,
                                            grad_scale=ops.clip_coef(ops.global_norm([g]), 1.0)),
    }
    adamw_ms = None
    for kind, fn in steps.items():
        pr = stream_probe(kind)
        probe_gb = BYTES[kind] * n / pr[0] / 1e6
        table.probe = probe_gb
        table.add("probe (same streams)", shape, pr, nbytes=BYTES[kind] * n)
        with use_backend("numpy"):
            np_t = timeit(fn, repeats=max(3, R // 3), warmup=1)
        table.add("numpy twin", shape, np_t, nbytes=BYTES[kind] * n)
        torch_best = None
        if torch is not None:
            tps = [torch.zeros(s) for s in SIZES]
            for t in tps:
                t.grad = torch.randn(t.shape) * 0.01
            variants = {"for-loop": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}
            for name, flags in variants.items():
                if kind in ("adam", "clip+adamw", "adamw"):
                    cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
                    opt = cls(tps, lr=1e-3, **flags)
                else:
                    opt = torch.optim.SGD(tps, lr=1e-2, momentum=0.9, **flags)
                if kind == "clip+adamw":
                    def tstep(opt=opt):
                        torch.nn.utils.clip_grad_norm_(tps, 1.0, foreach=True)
                        opt.step()
                else:
                    tstep = opt.step
                tt = timeit(tstep, repeats=R)
                table.add(f"torch {name}", shape, tt, nbytes=BYTES[kind] * n)
                if name == "fused":
                    torch_best = tt[0]
            del tps
        ft = timeit(fn, repeats=R)
        row = table.add("fusetrain fused", shape, ft, nbytes=BYTES[kind] * n, numpy_ms=np_t[0], torch_ms=torch_best)
        row["bench"] = kind
        for r in table.rows:
            r["bench"] = kind if r["bench"] == "optimizer step" else r["bench"]
        if kind == "adamw":
            adamw_ms = ft[0]
        if kind == "clip+adamw" and adamw_ms:
            print(f"clip+adamw / adamw alone = {ft[0] / adamw_ms:.3f} (target <= 1.15)")
    table.print()
    print("saved", table.save())


if __name__ == "__main__":
    main()
