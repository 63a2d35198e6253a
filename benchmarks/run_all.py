"""Runs every kernel and training benchmark in turn (each in its own process, so one's memory and
threads do not disturb the next), then draws benchmarks/results/summary.png from the CSVs.

    python benchmarks/run_all.py [--quick]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["bench_optim.py", "bench_dropout.py", "bench_batchnorm.py", "bench_modules.py", "bench_conv.py",
           "bench_train.py", "bench_resnet.py"]


def plot_summary(results: Path) -> Path | None:
    """Bar chart of fusetrain's speed-up over torch and NumPy for the latest row of each benchmark."""
    import csv

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the summary chart (pip install matplotlib)")
        return None
    latest = {}
    for path in sorted(results.glob("*.csv")):
        with open(path) as f:
            for row in csv.DictReader(f):
                if row.get("impl", "").startswith("fusetrain") and (row.get("speedup_vs_torch") or row.get("speedup_vs_numpy")):
                    latest[(row["bench"], row["impl"], row["shape"])] = row
    if not latest:
        return None
    labels = [f"{b}\n{s}" + ("" if i == "fusetrain fused" or i == "fusetrain" else f"\n{i[10:]}") for b, i, s in latest]
    vs_torch = [float(r["speedup_vs_torch"] or 0) for r in latest.values()]
    vs_numpy = [float(r["speedup_vs_numpy"] or 0) for r in latest.values()]
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(labels)), 5))
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], vs_torch, width=0.4, label="vs PyTorch CPU")
    ax.bar([x + 0.2 for x in xs], vs_numpy, width=0.4, label="vs NumPy")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(list(xs), labels, fontsize=7)
    ax.set_ylabel("speed-up (x, higher is better)")
    ax.set_yscale("log")
    ax.set_title("fusetrain speed-ups measured in one run per benchmark")
    ax.legend()
    fig.tight_layout()
    out = results / "summary.png"
    fig.savefig(out, dpi=110)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    args = ap.parse_args()
    failed = []
    for name in SCRIPTS:
        script = HERE / name
        if not script.exists():
            continue
        cmd = [sys.executable, str(script)] + (["--repeats", "5"] if args.quick and name.startswith(
            ("bench_optim", "bench_dropout", "bench_batchnorm")) else [])
        print(f"\n=== {name} ===", flush=True)
        if subprocess.call(cmd, cwd=HERE) != 0:
            failed.append(name)
    out = plot_summary(HERE / "results")
    if out:
        print("chart:", out)
    if failed:
        print("failed:", ", ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
