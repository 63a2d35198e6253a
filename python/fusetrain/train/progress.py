"""Progress of a fit on tqdm: a live bar per epoch on a terminal (a widget in notebooks, through
tqdm.auto), then one summary line per epoch that fits the terminal's width; plain lines in logs."""
from __future__ import annotations

import sys
import time

from tqdm import tqdm as _console_tqdm
from tqdm.auto import tqdm as _auto_tqdm

from ..console import fit_lines, is_terminal, terminal_width

# tqdm.auto chose its notebook class: this process is a Jupyter kernel with ipywidgets
_IN_NOTEBOOK = any(c.__module__ == "tqdm.notebook" for c in _auto_tqdm.__mro__)

_BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


def format_value(name, value) -> str:
    """A metric as the progress shows it: 4 decimals (Keras's), the learning rate and very small or
    large values in 3 significant digits, counts (skipped steps) as integers."""
    if name == "skipped_steps":
        return str(int(value))
    if name == "lr" or value != 0 and not 1e-3 <= abs(value) < 1e4:
        return f"{value:.3g}"
    return f"{value:.4f}"


class Progress:
    """What ``Trainer.fit`` shows while it trains, by Keras's ``verbose`` levels.

    ``verbose=0``: nothing. ``verbose=1``: on a terminal a live tqdm bar per epoch (batches,
    samples/s, running loss), replaced at the epoch's end by its summary (samples/s and every
    metric), wrapped between fields to the terminal's width; in a Jupyter notebook a tqdm widget
    per epoch that keeps the summary; in a log or a pipe only the summary, one line per epoch.
    ``verbose=2``: the one-line summaries alone, also on a terminal.
    """

    def __init__(self, epochs: int, steps: int, verbose=1, file=None):
        self.epochs, self.steps = int(epochs), int(steps)
        self.file = sys.stderr if file is None else file
        if not verbose:
            self.mode = None
        elif verbose == 2:
            self.mode = "lines"
        elif _IN_NOTEBOOK:
            self.mode = "widget"
        elif is_terminal(self.file):
            self.mode = "bar"
        else:
            self.mode = "lines"
        self._bar = None
        self._start = 0.0
        self._samples = 0
        self._desc = ""

    def start_epoch(self, epoch: int) -> None:
        """Begin epoch ``epoch`` (0-based; shown 1-based)."""
        self._desc = f"Epoch {epoch + 1}/{self.epochs}"
        self._start, self._samples = time.perf_counter(), 0
        if self.mode == "bar":
            self._bar = _console_tqdm(total=self.steps, desc=self._desc, file=self.file, leave=False,
                                      dynamic_ncols=True, bar_format=_BAR_FORMAT, mininterval=0.1)
        elif self.mode == "widget":
            self._bar = _auto_tqdm(total=self.steps, desc=self._desc, leave=True, unit="batch")

    def step(self, samples: int, loss=None) -> None:
        """One batch of ``samples`` done; ``loss``: the epoch's running mean loss so far."""
        self._samples += samples
        if self._bar is not None:
            postfix = f"{self._rate():,.0f} samples/s" + ("" if loss is None else f", loss {loss:.4f}")
            self._bar.set_postfix_str(postfix, refresh=False)
            self._bar.update(1)

    def end_epoch(self, logs: dict) -> None:
        """Close the epoch's bar and show its summary: samples/s and every metric in ``logs``."""
        if self.mode is None:
            return
        elapsed = time.perf_counter() - self._start
        metrics = [f"{k} {format_value(k, v)}" for k, v in logs.items() if k != "skipped_steps" or v]
        if self.mode == "widget":
            self._bar.set_postfix_str(f"{self._rate():,.0f} samples/s, " + ", ".join(metrics), refresh=False)
            self._bar.close()
            self._bar = None
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        fields = [self._desc, f"{self.steps}/{self.steps}", f"{elapsed:.{2 if elapsed < 1 else 1}f}s", f"{self._rate():,.0f} samples/s",
                  *metrics]
        if self.mode == "bar":
            text = fit_lines(fields, terminal_width(self.file) - 1)
        else:
            text = "  ".join(fields)
        self.file.write(text + "\n")
        self.file.flush()

    def close(self) -> None:
        """Close a bar left open by an exception in the middle of an epoch."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _rate(self) -> float:
        elapsed = time.perf_counter() - self._start
        return self._samples / elapsed if elapsed > 0 else 0.0
