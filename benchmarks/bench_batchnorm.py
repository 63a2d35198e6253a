"""BatchNorm forward+backward (training): fusetrain vs its NumPy twin and
torch.nn.functional.batch_norm, with bandwidth against the copy probe. Also BN+ReLU fused.
Each shape is first validated against the NumPy twin (outputs, statistics and gradients).

    python benchmarks/bench_batchnorm.py [--repeats N]
"""
from __future__ import annotations

import numpy as np

from common import Table, check_twin, parse_args, probe_gbps, timeit_round_robin, try_torch
from fusetrain import ops
from fusetrain.backend import use_backend

SHAPES = [(4096, 1024), (256, 1024), (64, 64, 32, 32)]


def main():
    args = parse_args(__doc__, repeats=20)
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
        # Traffic of the two-pass algorithm: forward reads x twice (stats, apply) and writes y;
        # backward reads dy and x twice (sums, apply) and writes dx: 7 passes of 4 bytes (where a
        # channel's second pass finds its data in cache, fewer reach memory).
        nbytes = 7 * 4 * x.size
        label = "x".join(map(str, shape))

        def outputs(relu):
            def run():
                y_, mean, invstd = ops.batchnorm_forward(x, w, b, rm.copy(), rv.copy(), training=True, relu=relu)
                dw_, db_ = np.zeros(C, np.float32), np.zeros(C, np.float32)
                dx_ = ops.batchnorm_backward(dy, x, y_, w, mean, invstd, training=True, relu=relu, grad_weight=dw_,
                                             grad_bias=db_)
                return {"y": y_, "mean": mean, "invstd": invstd, "grad_input": dx_, "grad_weight": dw_,
                        "grad_bias": db_}
            return run

        for relu in (False, True):
            check_twin(f"batchnorm{'+relu' if relu else ''} {label}", outputs(relu), rtol=1e-4, atol=1e-3)

        def step(relu=False):
            _, mean, invstd = ops.batchnorm_forward(x, w, b, rm, rv, training=True, relu=relu, out=y)
            ops.batchnorm_backward(dy, x, y, w, mean, invstd, training=True, relu=relu, grad_input=dx,
                                   grad_weight=gw, grad_bias=gb)

        def numpy_step():
            with use_backend("numpy"):
                step()

        fns = {"numpy twin": numpy_step, "fusetrain": step, "fusetrain bn+relu fused": lambda: step(True)}
        if torch is not None:
            tx = torch.tensor(x, requires_grad=True)
            tw, tb = torch.ones(C, requires_grad=True), torch.zeros(C, requires_grad=True)
            trm, trv = torch.zeros(C), torch.ones(C)
            tdy = torch.tensor(dy)

            def tstep(relu=False):
                tx.grad = tw.grad = tb.grad = None
                y_ = torch.nn.functional.batch_norm(tx, trm, trv, tw, tb, training=True)
                (torch.relu(y_) if relu else y_).backward(tdy)

            fns["torch"] = tstep
            fns["torch bn+relu"] = lambda: tstep(True)
        t = timeit_round_robin(fns, repeats=R)  # interleaved: the ratios share the machine's drift
        np_ms = t["numpy twin"][0]
        table.add("numpy twin", label, t["numpy twin"], nbytes=nbytes)
        if torch is not None:
            table.add("torch", label, t["torch"], nbytes=nbytes)
        table.add("fusetrain", label, t["fusetrain"], nbytes=nbytes, numpy_ms=np_ms,
                  torch_ms=t["torch"][0] if torch is not None else None)
        if torch is not None:
            table.add("torch bn+relu", label, t["torch bn+relu"], nbytes=nbytes)
        table.add("fusetrain bn+relu fused", label, t["fusetrain bn+relu fused"], nbytes=nbytes, numpy_ms=np_ms,
                  torch_ms=t["torch bn+relu"][0] if torch is not None else None)
    table.print()
    print("saved", table.save())


if __name__ == "__main__":
    main()
