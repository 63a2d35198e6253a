"""The losses, loss and gradient in one call: softmax cross-entropy and squared error, fusetrain vs
its NumPy twin vs torch.nn.functional.cross_entropy / mse_loss (forward+backward), with bandwidth
against the copy probe; each case validated against the twin first (loss and gradient).

    python benchmarks/bench_loss.py [--repeats N]
"""
from __future__ import annotations

import numpy as np

from common import Table, add_rows, check_twin, parse_args, probe_gbps, timeit_round_robin, try_torch
from fusetrain import ops
from fusetrain.backend import use_backend

XENT_SHAPES = [(128, 10), (4096, 1000), (512, 32000)]  # (batch, classes)
MSE_SHAPES = [(128, 10), (4096, 1024), (64, 3, 224, 224)]


def cases(rng, torch):
    """(bench, shape label, fusetrain call, torch call or None, bytes moved) for every case."""
    for N, K in XENT_SHAPES:
        logits = (3 * rng.standard_normal((N, K))).astype(np.float32)
        labels = rng.integers(0, K, N)
        grad = np.empty_like(logits)
        tcall = None
        if torch is not None:
            tl, ty = torch.tensor(logits, requires_grad=True), torch.from_numpy(labels)

            def tcall(tl=tl, ty=ty):
                tl.grad = None
                torch.nn.functional.cross_entropy(tl, ty).backward()
        # reads the logits, writes their gradient (the labels are negligible)
        yield ("softmax_cross_entropy", f"{N}x{K}", lambda a=logits, b=labels, g=grad:
               ops.softmax_cross_entropy(a, b, grad_input=g), tcall, 8 * logits.size)
    for shape in MSE_SHAPES:
        pred, target = rng.standard_normal((2, *shape), dtype=np.float32)
        grad = np.empty_like(pred)
        tcall = None
        if torch is not None:
            tp, tt = torch.tensor(pred, requires_grad=True), torch.from_numpy(target)

            def tcall(tp=tp, tt=tt):
                tp.grad = None
                torch.nn.functional.mse_loss(tp, tt).backward()
        # reads pred and target, writes the gradient
        yield ("mse_loss", "x".join(map(str, shape)), lambda a=pred, b=target, g=grad:
               ops.mse_loss(a, b, grad_input=g), tcall, 12 * pred.size)


def main():
    args = parse_args(__doc__, repeats=20)
    torch = try_torch()
    table = Table("loss", "loss fwd+bwd", probe=probe_gbps()["copy"])
    for bench, label, call, tcall, nbytes in cases(np.random.default_rng(0), torch):
        def run(call=call):
            loss, grad = call()
            return {"loss": np.float64(loss), "grad_input": grad}

        check_twin(f"{bench} {label}", run, rtol=1e-5, atol=1e-7)

        def twin(call=call):
            with use_backend("numpy"):
                call()

        fns = {"numpy twin": twin, "fusetrain": call}
        if tcall is not None:
            fns["torch"] = tcall
        table.bench = f"{bench} fwd+bwd"
        add_rows(table, label, timeit_round_robin(fns, repeats=args.repeats), nbytes=nbytes)
    table.print()
    print("saved", table.save())


if __name__ == "__main__":
    main()
