"""A small tqdm-style progress bar (no dependency): batches done, samples/s and the running loss."""
from __future__ import annotations

import sys
import time


class ProgressBar:
    """One line per epoch. On a terminal it redraws in place at most ``refresh`` times a second;
    elsewhere (logs, pipes) it prints only the final line of the epoch."""

    def __init__(self, total: int, desc: str = "", file=None, width: int = 24, refresh: float = 10.0):
        self.total = max(int(total), 0)
        self.desc = desc
        self.file = sys.stderr if file is None else file
        self.width = width
        self.interval = 1.0 / refresh
        self.tty = bool(getattr(self.file, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.done = 0
        self.samples = 0

    def _line(self, postfix: str) -> str:
        frac = self.done / self.total if self.total else 1.0
        filled = int(round(frac * self.width))
        elapsed = time.perf_counter() - self.start
        rate = self.samples / elapsed if elapsed > 0 else 0.0
        bar = "#" * filled + "." * (self.width - filled)
        width = len(str(self.total))
        return (f"{self.desc} [{bar}] {self.done:>{width}}/{self.total} {elapsed:5.1f}s "
                f"{rate:,.0f} samples/s" + (f" {postfix}" if postfix else ""))

    def update(self, samples: int, postfix: str = "") -> None:
        self.done += 1
        self.samples += samples
        if not self.tty:
            return
        now = time.perf_counter()
        if now - self.last_draw >= self.interval or self.done == self.total:
            self.last_draw = now
            self.file.write("\r" + self._line(postfix) + "\x1b[K")
            self.file.flush()

    def close(self, postfix: str = "") -> None:
        self.file.write(("\r" if self.tty else "") + self._line(postfix) + ("\x1b[K\n" if self.tty else "\n"))
        self.file.flush()
