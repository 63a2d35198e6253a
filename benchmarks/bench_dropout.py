"""Dropout p=0.5 forward+backward on (4096, 1024): fusetrain (mask regenerated in backward, or a
1-bit packed mask) vs the NumPy twin (bit-exact Philox), a plain NumPy dropout (np.random mask,
the usual hand-written baseline) and torch.nn.functional.dropout, with a copy probe for bandwidth.
Both fusetrain variants are first validated against the twin (same mask, same values).

    python benchmarks/bench_dropout.py [--repeats N]
"""
from __future__ import annotations

import numpy as np

from common import Table, check_twin, parse_args, probe_gbps, timeit_round_robin, try_torch
from fusetrain import ops
from fusetrain.backend import use_backend

SHAPE = (4096, 1024)
P = 0.5


def main():
    args = parse_args(__doc__, repeats=20)
    R = args.repeats
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SHAPE).astype(np.float32)
    dy = rng.standard_normal(SHAPE).astype(np.float32)
    y = np.empty_like(x)
    dx = np.empty_like(x)
    bits = np.empty(ops.mask_bits_size(x.size), np.uint8)
    n = x.size
    # Bytes the op must move: forward reads x, writes y; backward reads dy, writes dx.
    nbytes = 16 * n
    probe = probe_gbps()["copy"]
    table = Table("dropout", "dropout p=0.5 fwd+bwd", probe=probe)
    shape = f"{SHAPE[0]}x{SHAPE[1]}"

    def regen():
        ops.dropout_forward(x, P, 1, 0, out=y)
        ops.dropout_backward(dy, P, 1, 0, grad_input=dx)

    def packed():
        ops.dropout_forward(x, P, 1, 0, out=y, mask_bits=bits)
        ops.dropout_backward(dy, P, 1, 0, grad_input=dx, mask_bits=bits)

    def outputs(packed_mask):
        def run():
            mask = np.empty_like(bits) if packed_mask else None
            y_ = ops.dropout_forward(x, P, 1, 0, mask_bits=mask)
            return {"y": y_, "grad_input": ops.dropout_backward(dy, P, 1, 0, mask_bits=mask)}
        return run

    check_twin("dropout (mask regenerated)", outputs(False), rtol=0, atol=0)
    check_twin("dropout (1-bit packed mask)", outputs(True), rtol=0, atol=0)

    def plain_numpy():
        keep = np.random.default_rng(1).random(SHAPE, dtype=np.float32) >= P
        out = np.where(keep, x * (1 / (1 - P)), 0)
        return np.where(keep, dy * (1 / (1 - P)), 0), out

    def twin():
        with use_backend("numpy"):
            regen()

    fns = {"numpy plain (np.random mask)": plain_numpy, "fusetrain (mask regenerated)": regen,
           "fusetrain (1-bit packed mask)": packed}
    torch = try_torch()
    if torch is not None:
        tx = torch.tensor(x, requires_grad=True)
        tdy = torch.tensor(dy)

        def tstep():
            tx.grad = None
            torch.nn.functional.dropout(tx, P, training=True).backward(tdy)

        fns["torch"] = tstep
    t = timeit_round_robin(fns, repeats=R)  # interleaved: the ratios share the machine's drift
    table.add("numpy twin (Philox, bit-exact)", shape, timeit_round_robin({"twin": twin}, repeats=2, warmup=1)["twin"],
              nbytes=nbytes)
    plain = t["numpy plain (np.random mask)"]
    table.add("numpy plain (np.random mask)", shape, plain, nbytes=nbytes)
    torch_ms = t["torch"][0] if torch is not None else None
    if torch is not None:
        table.add("torch", shape, t["torch"], nbytes=nbytes)
    for name in ("fusetrain (mask regenerated)", "fusetrain (1-bit packed mask)"):
        table.add(name, shape, t[name], nbytes=nbytes, numpy_ms=plain[0], torch_ms=torch_ms)
    table.print()
    print(f"mask memory: regenerated 0 bytes; packed {bits.nbytes} bytes = 1 bit/element; copy probe {probe:.1f} GB/s")
    print("saved", table.save())


if __name__ == "__main__":
    main()
