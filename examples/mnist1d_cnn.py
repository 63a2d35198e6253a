"""MNIST-1D with a 1-D CNN and the lesson's tricks (batchnorm, dropout, AdamW, clipping, LR decay),
plus an ablation that removes one trick at a time and all of them together.

The data set is the `mnist1d` package's default one (4000 train / 1000 test), generated
procedurally with its make_dataset (nothing is downloaded). Run:
    python examples/mnist1d_cnn.py                 # the recipe once
    python examples/mnist1d_cnn.py --ablation      # table + plot in runs/mnist1d_ablation/ (--out)
    python examples/mnist1d_cnn.py --torch         # the same recipe in PyTorch, time ratio
"""
from __future__ import annotations

import argparse
import csv
import os
import time

import numpy as np

import fusetrain
from fusetrain import nn, optim
from fusetrain.models.cnn import CNN1d


# The recipe: every trick on. Each ablation row switches one of them off.
RECIPE = dict(batchnorm=True, dropout=0.2, optimizer="adamw", lr=3e-3, weight_decay=1e-2, clip=1.0, decay=0.95,
              epochs=30, batch_size=128, seed=0)
ABLATION = [
    ("all tricks", {}),
    ("no batchnorm", dict(batchnorm=False)),
    ("no dropout", dict(dropout=0.0)),
    ("Adam, no weight decay", dict(optimizer="adam", weight_decay=0.0)),
    ("no clipping", dict(clip=None)),
    ("no LR decay", dict(decay=1.0)),
    ("no tricks (plain SGD)", dict(batchnorm=False, dropout=0.0, optimizer="sgd", lr=0.05, weight_decay=0.0,
                                   clip=None, decay=1.0)),
]


def load_mnist1d():
    """(x_train (4000, 1, 40), y_train, x_test (1000, 1, 40), y_test) as float32 / int64."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        raise SystemExit("this example needs the mnist1d package: pip install mnist1d") from exc
    d = make_dataset(get_dataset_args())  # procedural, the package's default arguments (seed 42)
    return (d["x"].astype(np.float32)[:, None, :], d["y"].astype(np.int64),
            d["x_test"].astype(np.float32)[:, None, :], d["y_test"].astype(np.int64))


def make_optimizer(params, cfg):
    clip = cfg["clip"]
    if cfg["optimizer"] == "adamw":
        return optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"], max_grad_norm=clip)
    if cfg["optimizer"] == "adam":
        return optim.Adam(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"], max_grad_norm=clip)
    return optim.SGD(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"], max_grad_norm=clip)


def evaluate(model, x, y, batch_size=500):
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int(np.sum(np.argmax(model(x[i:i + batch_size]), axis=1) == y[i:i + batch_size]))
    return correct / len(x)


def train(data, cfg, verbose=True):
    """Train CNN1d with cfg; returns (per-epoch test accuracies, per-epoch train losses, seconds
    spent training, i.e. without the per-epoch evaluation)."""
    x, y, xt, yt = data
    fusetrain.manual_seed(cfg["seed"])
    model = CNN1d(batchnorm=cfg["batchnorm"], dropout=cfg["dropout"])
    opt = make_optimizer(model.parameters(), cfg)
    sched = optim.lr_scheduler.ExponentialLR(opt, gamma=cfg["decay"])
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(cfg["seed"])
    accs, losses, spent = [], [], 0.0
    B = cfg["batch_size"]
    for epoch in range(cfg["epochs"]):
        t0 = time.perf_counter()
        model.train()
        perm = rng.permutation(len(x))
        total = 0.0
        for i in range(0, len(x), B):
            idx = perm[i:i + B]
            loss = loss_fn(model(x[idx]), y[idx])
            model.zero_grad()
            model.backward(loss_fn.backward())
            opt.step()
            total += loss * len(idx)
        sched.step()
        spent += time.perf_counter() - t0
        accs.append(evaluate(model, xt, yt))
        losses.append(total / len(x))
        if verbose:
            print(f"  epoch {epoch + 1:3d}  loss {losses[-1]:.4f}  test acc {accs[-1]:.4f}  ({spent:.1f}s)")
    return accs, losses, spent


def train_torch(data, cfg):
    """The same recipe (architecture, init scheme, optimizer, clip, decay, batches) in PyTorch CPU
    with 2 threads; returns (final test accuracy, seconds spent training)."""
    import torch

    torch.set_num_threads(2)
    tnn = torch.nn
    x, y, xt, yt = (torch.tensor(a) for a in data)
    torch.manual_seed(cfg["seed"])

    def cbr(i, o, k):
        return [tnn.Conv1d(i, o, k, padding=k // 2, bias=False), tnn.BatchNorm1d(o), tnn.ReLU()]

    class GlobalAvg(tnn.Module):
        def forward(self, v):
            return v.mean(dim=2)

    model = tnn.Sequential(*cbr(1, 32, 5), *cbr(32, 32, 5), tnn.MaxPool1d(2), *cbr(32, 64, 3), *cbr(64, 64, 3),
                           tnn.MaxPool1d(2), *cbr(64, 128, 3), GlobalAvg(), tnn.Dropout(cfg["dropout"]),
                           tnn.Linear(128, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg["decay"])
    loss_fn = tnn.CrossEntropyLoss()
    rng = np.random.default_rng(cfg["seed"])
    B, spent = cfg["batch_size"], 0.0
    for _ in range(cfg["epochs"]):
        t0 = time.perf_counter()
        model.train()
        perm = torch.tensor(rng.permutation(len(x)))
        for i in range(0, len(x), B):
            idx = perm[i:i + B]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip"])
            opt.step()
        sched.step()
        spent += time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        acc = float((model(xt).argmax(1) == yt).float().mean())
    return acc, spent


def ablation(data, epochs, out):
    """Every ABLATION configuration; table (CSV, Markdown) and plot into the folder ``out`` (the
    published ones in benchmarks/results/ are only replaced by hand)."""
    rows, curves = [], {}
    for name, change in ABLATION:
        cfg = dict(RECIPE, **change, epochs=epochs)
        print(f"{name}:")
        accs, losses, spent = train(data, cfg, verbose=False)
        curves[name] = accs
        rows.append(dict(config=name, final_test_acc=accs[-1], best_test_acc=max(accs), final_train_loss=losses[-1],
                         train_seconds=spent))
        print(f"  final test acc {accs[-1]:.4f} (best {max(accs):.4f}), train loss {losses[-1]:.4f}, {spent:.1f}s")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "mnist1d_ablation.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(out, "mnist1d_ablation.md"), "w") as f:
        f.write(f"MNIST-1D (mnist1d default data, 4000 train / 1000 test), CNN1d, {epochs} epochs, batch "
                f"{RECIPE['batch_size']}, seed {RECIPE['seed']}; recipe: {RECIPE}\n\n")
        f.write("| configuration | final test acc | best test acc | final train loss | train time (s) |\n")
        f.write("|---|---|---|---|---|\n")
        for r in rows:
            f.write(f"| {r['config']} | {r['final_test_acc']:.4f} | {r['best_test_acc']:.4f} | "
                    f"{r['final_train_loss']:.4f} | {r['train_seconds']:.1f} |\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, accs in curves.items():
        ax.plot(range(1, len(accs) + 1), accs, label=name, lw=2 if name == "all tricks" else 1)
    ax.axhline(0.94, color="gray", ls=":", label="paper's CNN (94%)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    lowest = min(min(a) for a in curves.values())
    ax.set_ylim(max(0.0, min(0.5, lowest - 0.05)), 1.0)  # every curve visible, "no tricks" included
    ax.set_title("MNIST-1D CNN: removing one trick at a time")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "mnist1d_ablation.png"), dpi=120)
    print(f"wrote {out}/mnist1d_ablation.{{csv,md,png}}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    ap.add_argument("--ablation", action="store_true", help="run every configuration, write table and plot")
    ap.add_argument("--torch", action="store_true", help="also time the same recipe in PyTorch (CPU, 2 threads)")
    ap.add_argument("--out", default=os.path.join("runs", "mnist1d_ablation"), help="folder for the ablation's files")
    args = ap.parse_args()
    data = load_mnist1d()
    if args.ablation:
        ablation(data, args.epochs, args.out)
        return
    cfg = dict(RECIPE, epochs=args.epochs)
    accs, _, spent = train(data, cfg)
    print(f"fusetrain: final test accuracy {accs[-1]:.4f}, training time {spent:.1f}s")
    if args.torch:
        acc, tspent = train_torch(data, cfg)
        print(f"pytorch:   final test accuracy {acc:.4f}, training time {tspent:.1f}s")
        print(f"time ratio fusetrain / pytorch = {spent / tspent:.2f}")


if __name__ == "__main__":
    main()
