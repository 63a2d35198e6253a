"""History: per-epoch metrics of a fit (Keras's ``history.history`` dict) and a PNG of the curves."""
from __future__ import annotations

import csv
import math
import os


class History:
    """``history``: metric name -> list of per-epoch values (``"loss"``, ``"accuracy"``,
    ``"val_loss"``, ``"val_accuracy"``, ``"lr"``, ...); ``epoch``: the epoch indices."""

    def __init__(self, history=None, epoch=None):
        self.history = {k: [float(v) for v in vals] for k, vals in (history or {}).items()}
        self.epoch = [int(e) for e in (epoch or [])]

    def append(self, epoch: int, logs: dict) -> None:
        """Record one epoch's logs; a metric first seen now is padded with NaN for earlier epochs."""
        n = len(self.epoch)
        for key, value in logs.items():
            self.history.setdefault(key, [math.nan] * n).append(float(value))
        for key, vals in self.history.items():
            if len(vals) == n:
                vals.append(math.nan)
        self.epoch.append(int(epoch))

    def __len__(self):
        return len(self.epoch)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"

    def to_csv(self, path) -> None:
        """Write one row per epoch: ``epoch`` then each metric."""
        keys = list(self.history)
        _make_parent(path)
        with open(os.fspath(path), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch"] + keys)
            for i, e in enumerate(self.epoch):
                w.writerow([e] + [repr(self.history[k][i]) for k in keys])

    def plot(self, path, metrics=None, title=None) -> None:
        """Write a PNG with one panel per metric (default: loss and every other metric that has a
        validation twin, plus lr when recorded), training and validation curves together.

        Needs matplotlib (the ``plot`` extra); it is imported here, with the non-interactive Agg
        canvas, so plotting never opens a window or touches pyplot's global state.
        """
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError as exc:
            raise ImportError("History.plot needs matplotlib: pip install matplotlib "
                              "(or pip install 'fusetrain[plot]')") from exc
        if not self.epoch:
            raise ValueError("History.plot: nothing to plot, the history has no epochs")
        if metrics is None:
            metrics = [k for k in self.history if not k.startswith("val_") and k not in ("lr", "skipped_steps")]
            if "lr" in self.history:
                metrics.append("lr")
        else:
            metrics = [metrics] if isinstance(metrics, str) else list(metrics)
            missing = [m for m in metrics if m not in self.history]
            if missing:
                raise ValueError(f"History.plot: unknown metric(s) {missing}; recorded: {sorted(self.history)}")
        fig = Figure(figsize=(4.2 * len(metrics), 3.4), dpi=100)
        FigureCanvasAgg(fig)
        epochs = [e + 1 for e in self.epoch]
        for i, name in enumerate(metrics):
            ax = fig.add_subplot(1, len(metrics), i + 1)
            ax.plot(epochs, self.history[name], marker=".", label="train" if name != "lr" else "lr")
            if "val_" + name in self.history:
                ax.plot(epochs, self.history["val_" + name], marker=".", label="validation")
            if name == "lr":
                ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.set_title(name)
            ax.grid(alpha=0.3)
            ax.legend()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        _make_parent(path)
        fig.savefig(os.fspath(path), format="png")


def _make_parent(path) -> None:
    """Create the folder an output file goes into (a new run folder), as checkpoints do."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    os.makedirs(folder, exist_ok=True)
