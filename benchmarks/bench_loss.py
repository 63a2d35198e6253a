"""Softmax cross-entropy, loss and gradient of the logits in one call: fusetrain vs its NumPy twin vs
torch.nn.functional.cross_entropy (forward+backward), with bandwidth against the copy probe; each
shape validated against the twin first (loss and gradient).

    python benchmarks/bench_loss.py [--repeats N]
"""
from __future__ import annotations

import argparse

import numpy as np

from common import Table, add_rows, check_twin, probe_gbps, timeit_round_robin, try_torch
from fusetrain import ops
from fusetrain.backend import use_backend

SHAPES = [(128, 10), (4096, 1000), (512, 32000)]  # (batch, classes)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch = try_torch()
    table = Table("loss", "softmax_cross_entropy fwd+bwd", probe=probe_gbps()["copy"])
    rng = np.random.default_rng(0)
    for N, K in SHAPES:
        logits = (3 * rng.standard_normal((N, K))).astype(np.float32)
        labels = rng.integers(0, K, N)
        grad = np.empty_like(logits)
        label = f"{N}x{K}"

        def run():
            loss, g = ops.softmax_cross_entropy(logits, labels)
            return {"loss": np.float32(loss), "grad_input": g}

        check_twin(f"softmax_cross_entropy {label}", run, rtol=1e-5, atol=1e-7)

        def step():
            ops.softmax_cross_entropy(logits, labels, grad_input=grad)

        def twin():
            with use_backend("numpy"):
                step()

        fns = {"numpy twin": twin, "fusetrain": step}
        if torch is not None:
            tl = torch.tensor(logits, requires_grad=True)
            ty = torch.from_numpy(labels)

            def tstep():
                tl.grad = None
                torch.nn.functional.cross_entropy(tl, ty).backward()

            fns["torch"] = tstep
        # reads the logits, writes their gradient (the labels are negligible)
        add_rows(table, label, timeit_round_robin(fns, repeats=args.repeats), nbytes=8 * logits.size)
    table.print()
    print("saved", table.save())


if __name__ == "__main__":
    main()
