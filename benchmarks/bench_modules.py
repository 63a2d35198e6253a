"""Module-level figures: a Linear(1024,1024)-BatchNorm1d-ReLU-Dropout block forward+backward at
batch 128 (fused Sequential, the same layers unfused, the NumPy twins, torch.nn), and an AdamW
step over the parameter arena of an MLP 784-1024-1024-10 (with and without folded clipping)
vs torch.optim.AdamW(fused=True) and its default (foreach) path. Both are first validated against
the NumPy twins (the block's output and gradients, the parameters after one step).

    python benchmarks/bench_modules.py [--repeats N]
"""
from __future__ import annotations

import numpy as np

from common import Table, check_twin, layer_outputs, parse_args, timeit, try_torch
import fusetrain
from fusetrain import nn, optim
from fusetrain.backend import use_backend

BATCH, WIDTH, P = 128, 1024, 0.3


def _block(fuse: bool):
    m = nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.BatchNorm1d(WIDTH), nn.ReLU(), nn.Dropout(P))
    m.fuse = fuse
    return m


def bench_block(table: Table, repeats: int, torch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, WIDTH)).astype(np.float32)
    g = rng.standard_normal((BATCH, WIDTH)).astype(np.float32)
    shape = f"{BATCH}x{WIDTH}"
    fused, plain = _block(True), _block(False)
    for name, m in (("fused", fused), ("unfused", plain)):
        check_twin(f"{name} block {shape}", layer_outputs(m, x, g), rtol=1e-4, atol=1e-3)

    def step(m):
        m(x)
        m.backward(g)

    results = {"fused": timeit(lambda: step(fused), repeats=repeats, warmup=5),
               "unfused": timeit(lambda: step(plain), repeats=repeats, warmup=5)}
    with use_backend("numpy"):
        results["numpy"] = timeit(lambda: step(plain), repeats=max(3, repeats // 3), warmup=2)
    torch_ms = None
    if torch is not None:
        tm = torch.nn.Sequential(torch.nn.Linear(WIDTH, WIDTH), torch.nn.BatchNorm1d(WIDTH), torch.nn.ReLU(),
                                 torch.nn.Dropout(P))
        xt, gt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(g)

        def tstep():
            y = tm(xt)
            y.backward(gt)

        t = timeit(tstep, repeats=repeats, warmup=5)
        torch_ms = t[0]
    numpy_ms = results["numpy"][0]
    bench = "Linear-BN-ReLU-Dropout fwd+bwd"
    table.bench = bench
    table.add("fusetrain fused", shape, results["fused"], numpy_ms=numpy_ms, torch_ms=torch_ms)
    table.add("fusetrain unfused", shape, results["unfused"], numpy_ms=numpy_ms, torch_ms=torch_ms)
    table.add("numpy twins", shape, results["numpy"], torch_ms=torch_ms)
    if torch is not None:
        table.add("torch", shape, t)


def bench_adamw(table: Table, repeats: int, torch):
    fusetrain.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 1024), nn.BatchNorm1d(1024), nn.ReLU(), nn.Linear(1024, 1024),
                          nn.BatchNorm1d(1024), nn.ReLU(), nn.Linear(1024, 10))
    model.flatten_parameters()
    params = list(model.parameters())
    n = sum(p.size for p in params)
    rng = np.random.default_rng(1)
    for p in params:
        p.grad = rng.standard_normal(p.shape).astype(np.float32) * 1e-2
    shape = f"{n} params in {len(params)} tensors"

    def stepped(**kw):
        def run():
            start = [p.data.copy() for p in params]
            optim.AdamW(params, lr=1e-3, **kw).step()
            out = {f"param[{i}]": p.data.copy() for i, p in enumerate(params)}
            for p, s in zip(params, start):
                p.data[...] = s
            return out
        return run

    check_twin("AdamW step", stepped(), rtol=1e-5, atol=1e-6)
    check_twin("AdamW step +clip", stepped(max_grad_norm=1.0), rtol=1e-5, atol=1e-6)
    opt = optim.AdamW(params, lr=1e-3)
    clip = optim.AdamW(params, lr=1e-3, max_grad_norm=1.0)
    with use_backend("numpy"):
        nopt = optim.AdamW(params, lr=1e-3)
        numpy_t = timeit(nopt.step, repeats=max(3, repeats // 3), warmup=1)
    ours = timeit(opt.step, repeats=repeats, warmup=3)
    ours_clip = timeit(clip.step, repeats=repeats, warmup=3)
    torch_ms = None
    table.bench = "AdamW step over an MLP arena"
    if torch is not None:
        tps = [torch.nn.Parameter(torch.from_numpy(p.data.copy())) for p in params]
        for tp, p in zip(tps, params):
            tp.grad = torch.from_numpy(p.grad.copy())
        tfused = torch.optim.AdamW(tps, lr=1e-3, fused=True)
        tforeach = torch.optim.AdamW(tps, lr=1e-3)
        t_fused = timeit(tfused.step, repeats=repeats, warmup=3)
        t_foreach = timeit(tforeach.step, repeats=repeats, warmup=3)

        def tclip():
            torch.nn.utils.clip_grad_norm_(tps, 1e9)  # norm + (no-op) scale: the clipping cost
            tfused.step()

        t_clip = timeit(tclip, repeats=repeats, warmup=3)
        torch_ms = t_fused[0]
    table.add("fusetrain", shape, ours, nbytes=28 * n, numpy_ms=numpy_t[0], torch_ms=torch_ms)
    table.add("fusetrain +clip", shape, ours_clip, nbytes=32 * n, numpy_ms=numpy_t[0],
              torch_ms=None if torch is None else t_clip[0])
    table.add("numpy twin", shape, numpy_t, nbytes=28 * n, torch_ms=torch_ms)
    if torch is not None:
        table.add("torch fused", shape, t_fused, nbytes=28 * n)
        table.add("torch foreach", shape, t_foreach, nbytes=28 * n)
        table.add("torch fused +clip", shape, t_clip, nbytes=32 * n)


def main():
    args = parse_args(__doc__, repeats=30)
    torch = try_torch()
    table = Table("modules", "modules")
    bench_block(table, args.repeats, torch)
    bench_adamw(table, args.repeats, torch)
    table.print()
    print("saved to", table.save())


if __name__ == "__main__":
    main()
