"""Training throughput of the reference MLP recipe: 784-1024-1024-10 with BatchNorm, ReLU,
Dropout(0.3), AdamW (lr 1e-3, weight decay 1e-2), clipping by global norm 1.0, ExponentialLR(0.98),
batch 128, on MNIST-shaped synthetic data (fusetrain.data.make_synthetic_mnist).

Each implementation runs in fresh processes, in interleaved rounds (so peak memory is its own, no
thread pool of one disturbs another, and drifts of the machine's speed hit all alike): fusetrain's Trainer on the fused kernels, the same Trainer on the NumPy twins,
and a plain PyTorch CPU loop (AdamW fused=True and the default foreach) when torch is installed.
Every loop tracks the loss and accuracy per batch, as a Keras-style trainer does. Also reported:
the Python and dispatch overhead of one fusetrain step, measured as the step time of the same
network at width 1 and batch 2 (kernels nearly free), as a share of the real step. Before any
timing, the model's loss and gradients on one batch are validated against the NumPy twins.

    python benchmarks/bench_train.py [--samples N] [--epochs E] [--rounds R]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from common import Table, check_twin, model_outputs, run_fresh

HIDDEN, P, BATCH, LR, WD, CLIP, GAMMA = (1024, 1024), 0.3, 128, 1e-3, 1e-2, 1.0, 0.98


def _rss_mb():
    """(current, peak) resident set size in MB, from /proc/self/status (Linux)."""
    vals = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, kb = line.split()[:2]
                vals[key] = int(kb) / 1024.0
    return vals["VmRSS:"], vals["VmHWM:"]


def _reset_peak():
    """Start a new peak-RSS measurement (Linux >= 4.0: writing 5 to clear_refs resets VmHWM)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def run_fusetrain(x, y, epochs, backend, hidden=HIDDEN, batch=BATCH):
    import fusetrain
    from fusetrain import optim
    from fusetrain.models import MLP
    from fusetrain.optim.lr_scheduler import ExponentialLR

    fusetrain.backend.set_backend(backend)
    fusetrain.manual_seed(0)
    model = MLP(x.shape[1], hidden, 10, batchnorm=True, dropout=P)
    opt = optim.AdamW(model.parameters(), lr=LR, weight_decay=WD)
    times = []

    class EpochTimer(fusetrain.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    trainer = fusetrain.Trainer(model, opt, max_grad_norm=CLIP, scheduler=ExponentialLR(opt, GAMMA))
    trainer.fit(x[:4 * batch], y[:4 * batch], epochs=1, batch_size=batch, verbose=0)  # warm-up: buffers, pages
    trainer.fit(x, y, epochs=epochs, batch_size=batch, verbose=0, callbacks=[EpochTimer()])
    return times, trainer.history.history["loss"][-1]


def run_torch(x, y, epochs, fused):
    import torch

    torch.set_num_threads(int(os.environ.get("FUSETRAIN_BENCH_THREADS", "2")))
    torch.manual_seed(0)
    tnn = torch.nn
    layers, width = [], x.shape[1]
    for h in HIDDEN:
        layers += [tnn.Linear(width, h, bias=False), tnn.BatchNorm1d(h), tnn.ReLU(), tnn.Dropout(P)]
        width = h
    model = tnn.Sequential(*layers, tnn.Linear(width, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WD, fused=fused)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, GAMMA)
    loss_fn = tnn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(0)

    def epoch(n):
        model.train()
        order = torch.randperm(n, generator=gen)
        loss_sum, correct = 0.0, 0
        for lo in range(0, n, BATCH):
            idx = order[lo:lo + BATCH]
            xb, yb = xt[idx], yt[idx]
            out = model(xb)
            loss = loss_fn(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            opt.step()
            loss_sum += loss.item() * len(idx)
            correct += int((out.argmax(1) == yb).sum())
        sched.step()
        return loss_sum / n

    epoch(4 * BATCH)  # warm-up
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        loss = epoch(len(x))
        times.append(time.perf_counter() - t0)
    return times, loss


def python_overhead(repeats=200):
    """Seconds per step of the same 3-block trainer step at width 1, batch 2: what a step costs
    in Python and dispatch when the kernels have (almost) nothing to do."""
    import fusetrain
    from fusetrain import optim
    from fusetrain.models import MLP

    fusetrain.manual_seed(0)
    model = MLP(1, (1, 1), 2, batchnorm=True, dropout=P)
    opt = optim.AdamW(model.parameters(), lr=LR, weight_decay=WD, max_grad_norm=CLIP)
    trainer = fusetrain.Trainer(model, opt)
    x = np.random.default_rng(0).random((2 * repeats, 1), dtype=np.float32)
    y = np.tile(np.array([0, 1]), repeats)
    trainer.fit(x[:8], y[:8], epochs=1, batch_size=2, verbose=0, shuffle=False)
    t0 = time.perf_counter()
    trainer.fit(x, y, epochs=1, batch_size=2, verbose=0)
    return (time.perf_counter() - t0) / repeats


def validate():
    from fusetrain.data import make_synthetic_mnist
    from fusetrain.models import MLP

    x, y = make_synthetic_mnist(BATCH, seed=1)
    check_twin("MLP forward+backward", model_outputs(lambda: MLP(x.shape[1], HIDDEN, 10, batchnorm=True, dropout=P),
                                                     x, y), rtol=1e-4, atol=1e-4)


def child(args):
    from fusetrain.data import make_synthetic_mnist

    x, y = make_synthetic_mnist(args.samples, seed=1)
    if args.impl.startswith("torch"):
        import torch  # noqa: F401  (its import is not training memory)
    _reset_peak()
    base = _rss_mb()[0]
    if args.impl in ("fused", "numpy"):
        times, loss = run_fusetrain(x, y, args.epochs, args.impl)
    else:
        times, loss = run_torch(x, y, args.epochs, fused=args.impl == "torch_fused")
    res = {"epoch_seconds": times, "loss": float(loss), "base_mb": base, "peak_mb": _rss_mb()[1]}
    if args.impl == "fused":
        res["overhead_s"] = python_overhead()
    print(json.dumps(res))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=6400, help="training samples per epoch")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per run")
    ap.add_argument("--rounds", type=int, default=3,
                    help="runs of each implementation, interleaved (median and percentiles over all epochs)")
    ap.add_argument("--impl", choices=("fused", "numpy", "torch_fused", "torch_foreach"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.impl:
        return child(args)
    validate()
    impls = ["fused", "numpy"]
    try:
        import torch  # noqa: F401
        impls += ["torch_fused", "torch_foreach"]
    except ImportError:
        print("torch is not installed: PyTorch rows skipped")
    # Rounds of every implementation in turn: the machine's speed drifts by tens of percent over a
    # minute, and interleaving gives each implementation the same share of fast and slow spells.
    results = {impl: None for impl in impls}
    for rnd in range(args.rounds):
        for impl in impls:
            r = run_fresh(__file__, impl, ["--samples", args.samples, "--epochs", args.epochs])
            if results[impl] is None:
                results[impl] = r
            else:
                results[impl]["epoch_seconds"] += r["epoch_seconds"]
                results[impl]["peak_mb"] = max(results[impl]["peak_mb"], r["peak_mb"])
            print(f"round {rnd + 1}: {impl:14s} {args.samples / np.median(r['epoch_seconds']):9.0f} samples/s  "
                  f"final loss {r['loss']:.4f}  RSS {r['base_mb']:.0f} MB before training (framework + data), "
                  f"peak {r['peak_mb']:.0f} MB", flush=True)
    for r in results.values():
        r["seconds"] = float(np.median(r["epoch_seconds"]))
    n = args.samples
    shape = f"MLP 784-1024-1024-10 BN+ReLU+Dropout(0.3), AdamW, clip 1.0, ExponentialLR, batch {BATCH}"
    table = Table("train", "MLP training (ms per epoch)")
    per_epoch = {k: tuple(float(np.percentile(1e3 * np.array(v["epoch_seconds"]), q)) for q in (50, 20, 80))
                 for k, v in results.items()}
    torch_ms = per_epoch["torch_fused"][0] if "torch_fused" in per_epoch else None
    names = {"fused": "fusetrain", "numpy": "fusetrain numpy twins", "torch_fused": "torch (AdamW fused=True)",
             "torch_foreach": "torch (AdamW foreach)"}
    for impl, ms in per_epoch.items():
        table.add(names[impl], shape, ms, numpy_ms=per_epoch["numpy"][0] if impl == "fused" else None,
                  torch_ms=torch_ms if impl != "torch_fused" else None)
    table.print()
    sps = {k: n / v["seconds"] for k, v in results.items()}
    print("\nsamples/s: " + ", ".join(f"{names[k]} {v:,.0f}" for k, v in sps.items()))
    if "torch_fused" in sps:
        print(f"fusetrain / torch fused = {sps['fused'] / sps['torch_fused']:.2f}x (target >= 2)")
        print(f"fusetrain / torch foreach = {sps['fused'] / sps['torch_foreach']:.2f}x")
    print(f"fusetrain / NumPy twins = {sps['fused'] / sps['numpy']:.2f}x (target >= 4)")
    step_s = results["fused"]["seconds"] / (n / BATCH)
    ov = results["fused"]["overhead_s"]
    print(f"Python + dispatch overhead: {1e3 * ov:.3f} ms of a {1e3 * step_s:.2f} ms step = {100 * ov / step_s:.1f}% "
          "(target <= 15%)")
    print("peak RSS during training, MB (growth over the RSS before it): " + ", ".join(
        f"{names[k]} {v['peak_mb']:.0f} (+{v['peak_mb'] - v['base_mb']:.0f})" for k, v in results.items()))
    print("saved", table.save())


if __name__ == "__main__":
    main()
