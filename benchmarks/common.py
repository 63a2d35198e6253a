"""Shared benchmark machinery: validation against the NumPy twins before any timing, timing with
warm-up and percentiles, the bandwidth probe, the machine description, CSV rows and the printed
table. Timings are only meaningful as ratios measured in the same run: these machines are shared
and noisy. Method and results: docs/performance.md."""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# New results go to an output folder (`fusetrain bench --out` sets it); benchmarks/results/ keeps the
# published figures and is never rewritten by a run.
RESULTS = Path(os.environ.get("FUSETRAIN_BENCH_OUT") or Path(__file__).resolve().parents[1] / "runs" / "bench")
CSV_FIELDS = ["date", "machine", "bench", "impl", "shape", "median_ms", "p20_ms", "p80_ms", "gb_per_s",
              "pct_of_probe", "speedup_vs_numpy", "speedup_vs_torch"]


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), or what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    from fusetrain import _core

    return f"{cpu_name()}, {os.cpu_count()} cpus, {_core.num_threads()} fusetrain threads"


def parse_args(doc: str, repeats: int) -> argparse.Namespace:
    """The command line every kernel benchmark takes: ``[--repeats N]``, described by the first
    line of the script's docstring."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=repeats)
    return ap.parse_args()


def try_torch():
    """torch with 2 threads (the anchors' setting), or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(int(os.environ.get("FUSETRAIN_BENCH_THREADS", "2")))
    return torch


def compare(name: str, got: dict, want: dict, against: str, *, rtol: float, atol: float) -> None:
    """Exits with status 1, naming the output and its largest difference, unless every array of
    `got` matches its namesake in `want` (same shape, finite, within rtol/atol)."""
    for key, expected in want.items():
        a, b = np.asarray(got[key], np.float64), np.asarray(expected, np.float64)
        if a.shape != b.shape:
            sys.exit(f"{name}: {key} has shape {a.shape}, the {against} gives {b.shape}; nothing was timed")
        if not (np.all(np.isfinite(a)) and np.allclose(a, b, rtol=rtol, atol=atol)):
            worst = float(np.nanmax(np.abs(a - b))) if a.size else 0.0
            sys.exit(f"{name}: {key} differs from the {against} (largest difference {worst:.3g}; allowed: rtol "
                     f"{rtol}, atol {atol}); nothing was timed")
    what = ", ".join(want) if len(want) <= 6 else f"all {len(want)} outputs"
    print(f"validated {name}: {what} match the {against} (rtol {rtol}, atol {atol})", flush=True)


def check_twin(name: str, run, *, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """Validation before timing, which every bench_*.py does first: a fast wrong kernel must not
    produce a figure. run() is called once on the compiled kernels and once on the NumPy twins
    (``use_backend("numpy")``), each time from the same starting state, and returns {label: array};
    the arrays are copied at once, as run() may write into buffers that the next call reuses."""
    from fusetrain.backend import use_backend

    got = {k: np.array(v) for k, v in run().items()}
    with use_backend("numpy"):
        want = {k: np.array(v) for k, v in run().items()}
    compare(name, got, want, "NumPy twin", rtol=rtol, atol=atol)


def layer_step(layer, x, dy):
    """One forward+backward of a fusetrain layer, as a timed job."""
    def step():
        layer(x)
        layer.backward(dy)
    return step


def layer_outputs(layer, x, dy):
    """What a forward+backward of `layer` produces, for check_twin: output, input and weight gradients.
    Each run reseeds fusetrain, so both runs draw the same dropout masks."""
    import fusetrain

    def run():
        fusetrain.manual_seed(0)
        layer.zero_grad()
        out = {"y": layer(x), "grad_input": layer.backward(dy)}
        out.update({f"grad {name}": p.grad for name, p in layer.named_parameters()})
        return out
    return run


def model_outputs(build, x, labels):
    """The loss and every parameter's gradient after one cross-entropy forward+backward of a fresh
    model, build() called after reseeding fusetrain (same weights, same dropout masks), for check_twin."""
    import fusetrain
    from fusetrain import nn

    def run():
        fusetrain.manual_seed(0)
        model, loss_fn = build(), nn.CrossEntropyLoss()
        out = {"loss": np.asarray(loss_fn(model(x), labels))}
        model.backward(loss_fn.backward())
        out.update({f"grad {name}": p.grad for name, p in model.named_parameters()})
        return out
    return run


def torch_step(torch, module, x, dy):
    """One forward+backward of a torch.nn module, as a timed job."""
    tx = torch.tensor(x, requires_grad=True)
    tdy = torch.tensor(dy)

    def step():
        tx.grad = None
        module.zero_grad(set_to_none=True)
        module(tx).backward(tdy)
    return step


def timeit(fn, *, repeats=20, warmup=3, min_time=0.0):
    """Calls fn() warmup times, then repeats times (more if min_time seconds are not yet spent).
    Returns (median, p20, p80) in milliseconds.

    It first pauses 0.1 s: threads of whatever ran before (OpenBLAS's and torch's workers spin for
    milliseconds after their last kernel, fusetrain's for ~50 us) go to sleep, so no implementation
    is timed against another's spinning threads."""
    time.sleep(0.1)
    for _ in range(warmup):
        fn()
    samples = []
    start = time.perf_counter()
    while len(samples) < repeats or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    s = np.array(samples)
    return float(np.median(s)), float(np.percentile(s, 20)), float(np.percentile(s, 80))


def run_fresh(script, impl, args) -> object:
    """Run ``python script --impl impl *args`` in a fresh process and return the JSON document it
    prints last: each implementation gets its own memory, threads and peak-RSS figure."""
    cmd = [sys.executable, str(script), "--impl", impl] + [str(a) for a in args]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def timeit_round_robin(fns: dict, *, repeats=15, warmup=2) -> dict:
    """Times several implementations of one job in interleaved rounds (a, b, c, a, b, c, ...) and
    returns {name: (median, p20, p80)} in milliseconds. The memory bandwidth of these shared
    machines drifts within seconds; interleaving lets every implementation see the same drift, so
    the ratios between them hold even when the absolute times move."""
    time.sleep(0.1)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - t0) * 1e3)
    return {name: (float(np.median(s)), float(np.percentile(s, 20)), float(np.percentile(s, 80)))
            for name, s in samples.items()}


def probe_gbps(nbytes_hint: int = 256 << 20, repeats=15) -> dict:
    """GB/s of the extension's copy (8 B/elem) and triad (12 B/elem) loops on big arrays."""
    from fusetrain import ops

    n = nbytes_hint // 12
    a, b, c = np.zeros(n, np.float32), np.ones(n, np.float32), np.ones(n, np.float32)
    copy_ms = timeit(lambda: ops.probe_copy(b, a), repeats=repeats)[0]
    triad_ms = timeit(lambda: ops.probe_triad(a, b, c, 0.5), repeats=repeats)[0]
    return {"copy": 8 * n / copy_ms / 1e6, "triad": 12 * n / triad_ms / 1e6}


def add_rows(table, shape, times: dict, *, nbytes=None, numpy="numpy twin", torch="torch") -> None:
    """One table row per implementation timed in `times` ({name: (median, p20, p80)}); the rows of
    fusetrain's implementations (names starting with "fusetrain") carry their speed-ups over the
    `numpy` and `torch` entries, when those were timed."""
    base = {key: times[name][0] if name in times else None for key, name in (("numpy", numpy), ("torch", torch))}
    for name, t in times.items():
        ours = name.startswith("fusetrain")
        table.add(name, shape, t, nbytes=nbytes, numpy_ms=base["numpy"] if ours else None,
                  torch_ms=base["torch"] if ours else None)


class Table:
    """Collects rows, prints an aligned table and appends them to <RESULTS>/<name>.csv."""

    def __init__(self, name: str, bench: str, probe: float | None = None):
        self.name, self.bench, self.probe = name, bench, probe
        self.rows: list[dict] = []
        self.date = _dt.date.today().isoformat()
        self.machine = machine()

    def add(self, impl, shape, times, nbytes=None, numpy_ms=None, torch_ms=None):
        med, p20, p80 = times
        gbps = nbytes / med / 1e6 if nbytes else None
        row = {
            "date": self.date, "machine": self.machine, "bench": self.bench, "impl": impl, "shape": shape,
            "median_ms": round(med, 4), "p20_ms": round(p20, 4), "p80_ms": round(p80, 4),
            "gb_per_s": None if gbps is None else round(gbps, 2),
            "pct_of_probe": None if gbps is None or not self.probe else round(100 * gbps / self.probe, 1),
            "speedup_vs_numpy": None if numpy_ms is None else round(numpy_ms / med, 2),
            "speedup_vs_torch": None if torch_ms is None else round(torch_ms / med, 2),
        }
        self.rows.append(row)
        return row

    def print(self):
        cols = ["bench", "impl", "shape", "median_ms", "p20_ms", "p80_ms", "gb_per_s", "pct_of_probe",
                "speedup_vs_numpy", "speedup_vs_torch"]
        cells = [[("" if r[c] is None else str(r[c])) for c in cols] for r in self.rows]
        widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
        print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
        for x in cells:
            print("  ".join(v.ljust(w) for v, w in zip(x, widths)))

    def save(self):
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.name}.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            if new:
                w.writeheader()
            for r in self.rows:
                w.writerow(r)
        return path
