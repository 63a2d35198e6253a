"""Training throughput of the small ResNet (fusetrain.models.cnn.SmallResNet) on (128, 3, 32, 32):
one step is forward, cross-entropy, backward and an AdamW update. fusetrain fused vs the same model
on the NumPy twins vs PyTorch CPU (2 threads), samples/s and ratios from one run of this script
(each implementation in fresh processes, interleaved rounds); rows appended to conv.csv. Before
any timing, the model's loss and gradients on a batch of 16 are validated against the NumPy twins."""
from __future__ import annotations

import argparse
import json

import numpy as np

from common import Table, check_twin, model_outputs, run_fresh, timeit, try_torch
import fusetrain
from fusetrain import nn, optim
from fusetrain.backend import use_backend
from fusetrain.models.cnn import SmallResNet


def fusetrain_step(batch, classes=10):
    fusetrain.manual_seed(0)
    model = SmallResNet(in_channels=batch[1], num_classes=classes)
    opt = optim.AdamW(model.parameters(), lr=1e-3, max_grad_norm=1.0)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    x = rng.standard_normal(batch).astype(np.float32)
    y = rng.integers(0, classes, batch[0])

    def step():
        loss_fn(model(x), y)
        model.zero_grad()
        model.backward(loss_fn.backward())
        opt.step()
    return step


def torch_step(torch, batch, classes=10):
    tnn = torch.nn
    torch.manual_seed(0)

    class Residual(tnn.Module):
        def __init__(self, block):
            super().__init__()
            self.block = block

        def forward(self, x):
            return self.block(x) + x

    def cbr(i, o):
        return tnn.Sequential(tnn.Conv2d(i, o, 3, padding=1, bias=False), tnn.BatchNorm2d(o), tnn.ReLU())

    def block(c):
        return tnn.Sequential(Residual(tnn.Sequential(
            tnn.Conv2d(c, c, 3, padding=1, bias=False), tnn.BatchNorm2d(c), tnn.ReLU(),
            tnn.Conv2d(c, c, 3, padding=1, bias=False), tnn.BatchNorm2d(c))), tnn.ReLU())

    model = tnn.Sequential(cbr(batch[1], 32), block(32), tnn.MaxPool2d(2), cbr(32, 64), block(64),
                           tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Dropout(0.2), tnn.Linear(64, classes))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = tnn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal(batch).astype(np.float32))
    y = torch.tensor(rng.integers(0, classes, batch[0]))

    def step():
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return step


def child(args):
    """Time one implementation in this (fresh) process; prints its (median, p20, p80) ms as JSON."""
    batch = (args.batch, 3, 32, 32)
    if args.impl == "torch":
        torch = try_torch()
        t = timeit(torch_step(torch, batch), repeats=args.repeats, warmup=2)
    elif args.impl == "numpy":
        with use_backend("numpy"):
            t = timeit(fusetrain_step(batch), repeats=max(2, args.repeats // 2), warmup=1)
    else:
        t = timeit(fusetrain_step(batch), repeats=args.repeats, warmup=2)
    print(json.dumps(t))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved runs of fused and torch, each a fresh process")
    ap.add_argument("--skip-numpy", action="store_true", help="skip the (slow) NumPy-twin run")
    ap.add_argument("--impl", choices=("fused", "numpy", "torch"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.impl:
        return child(args)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, 16)
    # ten layers of float32 sums in different orders: looser than one op's check
    check_twin("SmallResNet forward+backward", model_outputs(lambda: SmallResNet(in_channels=3, num_classes=10), x, y),
               rtol=1e-3, atol=1e-3)
    impls = ["fused"] + (["torch"] if try_torch() is not None else [])
    runs = {impl: [] for impl in impls + ([] if args.skip_numpy else ["numpy"])}
    common = ["--batch", str(args.batch), "--repeats", str(args.repeats)]
    for rnd in range(args.rounds):  # the NumPy twin is slow and far behind: one run is enough
        for impl in impls + (["numpy"] if rnd == 0 and not args.skip_numpy else []):
            runs[impl].append(run_fresh(__file__, impl, common))
            print(f"round {rnd + 1}: {impl:6s} {1e3 * args.batch / runs[impl][-1][0]:8.1f} samples/s", flush=True)
    # median over rounds of each run's median; the spread is the widest of the runs' 20th/80th
    res = {k: (float(np.median([r[0] for r in v])), min(r[1] for r in v), max(r[2] for r in v))
           for k, v in runs.items()}
    fused, numpy_t, torch_t = res["fused"], res.get("numpy"), res.get("torch")
    shape = f"SmallResNet train step x={(args.batch, 3, 32, 32)}"
    table = Table("conv", "small resnet train step")
    table.add("fused", shape, fused, numpy_ms=None if numpy_t is None else numpy_t[0],
              torch_ms=None if torch_t is None else torch_t[0])
    if numpy_t is not None:
        table.add("numpy", shape, numpy_t)
    if torch_t is not None:
        table.add("torch", shape, torch_t)
    table.print()
    for impl, t in res.items():
        print(f"{impl:6s} {1e3 * args.batch / t[0]:8.1f} samples/s")
    if torch_t is not None:
        print(f"fused / torch samples/s ratio: {torch_t[0] / fused[0]:.2f} (target >= 1, stretch 1.5)")
    if numpy_t is not None:
        print(f"fused / numpy samples/s ratio: {numpy_t[0] / fused[0]:.2f}")
    print("wrote", table.save())


if __name__ == "__main__":
    main()
