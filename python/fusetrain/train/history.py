"""History: per-epoch metrics of a fit (Keras's ``history.history`` dict), how the fit ended, a CSV
of the metrics and a matplotlib figure of the curves."""
from __future__ import annotations

import csv
import functools
import io
import math
import os

from ..distributed.world import is_main_process

_PANEL_LABELS = {"loss": "loss", "accuracy": "accuracy", "lr": "learning rate"}


class History:
    """``history``: metric name -> list of per-epoch values (``"loss"``, ``"accuracy"``,
    ``"val_loss"``, ``"val_accuracy"``, ``"lr"``, ...); ``epoch``: the epoch indices (0-based,
    as Keras's). ``stopped_epoch``: the epoch after which EarlyStopping ended the fit, or None;
    ``restored_epoch``: the epoch whose weights EarlyStopping put back at the end, or None."""

    def __init__(self, history=None, epoch=None):
        self.history = {k: [float(v) for v in vals] for k, vals in (history or {}).items()}
        self.epoch = [int(e) for e in (epoch or [])]
        self.stopped_epoch = None
        self.restored_epoch = None

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
        """Write one row per epoch: ``epoch`` (counted from 1, as the progress and the plot count)
        then each metric. Data parallel, rank 0 writes (the ranks' histories are the same)."""
        if not is_main_process():
            return
        keys = list(self.history)
        _make_parent(path)
        with open(os.fspath(path), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch"] + keys)
            for i, e in enumerate(self.epoch):
                w.writerow([e + 1] + [repr(self.history[k][i]) for k in keys])

    def best_epoch(self):
        """The epoch to mark on the curves: the one EarlyStopping restored, else the one with the
        lowest validation loss (training loss without validation); None when there is neither."""
        if self.restored_epoch is not None:
            return self.restored_epoch
        values = self.history.get("val_loss") or self.history.get("loss")
        finite = [(v, e) for v, e in zip(values or (), self.epoch) if math.isfinite(v)]
        return min(finite)[1] if finite else None

    def plot(self, path=None, metrics=None, title=None):
        """The curves as a matplotlib Figure, one panel per metric (default: loss and every other
        metric that has a validation twin, plus lr when recorded), training and validation
        together, epochs counted from 1, the best epoch (``best_epoch()``) marked. A notebook
        shows the returned Figure; with ``path`` it is also written there as a PNG (data parallel:
        by rank 0).

        Needs matplotlib (the ``plot`` extra); the Figure is made without pyplot, so plotting never
        opens a window or touches pyplot's global state.
        """
        try:
            from matplotlib.ticker import MaxNLocator
            Figure = _figure_class()
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
        epochs = [e + 1 for e in self.epoch]
        best = self.best_epoch()
        for i, name in enumerate(metrics):
            ax = fig.add_subplot(1, len(metrics), i + 1)
            ax.plot(epochs, self.history[name], marker=".", label="train" if name != "lr" else "lr")
            if "val_" + name in self.history:
                ax.plot(epochs, self.history["val_" + name], marker=".", label="validation")
            if best is not None:
                what = "restored" if best == self.restored_epoch else "best"
                ax.axvline(best + 1, color="0.4", linestyle="--", linewidth=1, label=f"{what}: epoch {best + 1}")
            if name == "lr":
                ax.set_yscale("log")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel(_PANEL_LABELS.get(name, name))
            ax.set_title(name)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        if path is not None and is_main_process():
            _make_parent(path)
            fig.savefig(os.fspath(path), format="png")
        return fig


@functools.lru_cache(maxsize=None)
def _figure_class():
    """matplotlib's Figure, displayed by IPython as a PNG: a Figure made without pyplot has no
    display of its own in a notebook unless pyplot's inline backend was set up first."""
    from matplotlib.figure import Figure

    class HistoryFigure(Figure):
        def _repr_png_(self):
            buf = io.BytesIO()
            self.savefig(buf, format="png")
            return buf.getvalue()

    return HistoryFigure


def _make_parent(path) -> None:
    """Create the folder an output file goes into (a new run folder), as checkpoints do."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    os.makedirs(folder, exist_ok=True)
