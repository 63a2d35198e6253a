"""BatchNorm forward+backward (training) at PERFORMANCE.md's shapes: fusetrain vs its NumPy twin and
torch.nn.functional.batch_norm, with bandwidth against the copy probe. Also BN+ReLU fused.

    python benchmarks/bench_batchnorm.py [--repeats N]
"""
from __future__ import annotations

import argparse

import numpy as np

from common import Table, probe_gbps, timeit, try_torch
from fusetrain import ops
from fusetrain.backend import use_backend

SHAPES = [(4096, 1024), (256, 1024), (64, 64, 32, 32)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    R = args.repeats
    torch = try_torch()
    probe = probe_gbps()["copy"]
    table = Table("batchnorm", "batchnorm fwd+bwd", probe=probe)
    for shape in SHAPES:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape).astype(np.float32)
        dy = rng.standard_normal(shape).astype(np.float32)
        C = shape[1]
        w, b = np.ones(C, np.float32), np.zeros(C, np.float32)
        rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
        gw, gb = np.zeros(C, np.float32), np.zeros(C, np.float32)
        y, dx = np.empty_like(x), np.empty_like(x)
        # Minimum traffic: forward reads x twice (stats, apply) and writes y; backward reads dy and
        # x twice (sums, apply) and writes dx: 7 passes of 4 bytes.
        nbytes = 7 * 4 * x.size
        label = "x".join(map(str, shape))

        def step(relu=False):
            _, mean, invstd = ops.batchnorm_forward(x, w, b, rm, rv, training=True, relu=relu, out=y)
            ops.batchnorm_backward(dy, x, y, w, mean, invstd, training=True, relu=relu, grad_input=dx,
                                   grad_weight=gw, grad_bias=gb)

        with use_backend("numpy"):
            np_t = timeit(step, repeats=max(3, R // 4), warmup=1)
        table.add("numpy twin", label, np_t, nbytes=nbytes)
        torch_ms = None
        if torch is not None:
            tx = torch.tensor(x, requires_grad=True)
            tw, tb = torch.ones(C, requires_grad=True), torch.zeros(C, requires_grad=True)
            trm, trv = torch.zeros(C), torch.ones(C)
            tdy = torch.tensor(dy)

            def tstep():
                tx.grad = tw.grad = tb.grad = None
                torch.nn.functional.batch_norm(tx, trm, trv, tw, tb, training=True).backward(tdy)

            tt = timeit(tstep, repeats=R)
            torch_ms = tt[0]
            table.add("torch", label, tt, nbytes=nbytes)
        table.add("fusetrain", label, timeit(step, repeats=R), nbytes=nbytes, numpy_ms=np_t[0], torch_ms=torch_ms)
        if torch is not None:
            def tstep_relu():
                tx.grad = tw.grad = tb.grad = None
                torch.relu(torch.nn.functional.batch_norm(tx, trm, trv, tw, tb, training=True)).backward(tdy)

            tr = timeit(tstep_relu, repeats=R)
            table.add("torch bn+relu", label, tr, nbytes=nbytes)
            table.add("fusetrain bn+relu fused", label, timeit(lambda: step(True), repeats=R), nbytes=nbytes,
                      torch_ms=tr[0])
    table.print()
    print("saved", table.save())


if __name__ == "__main__":
    main()
