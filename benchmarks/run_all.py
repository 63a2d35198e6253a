"""Runs every kernel and training benchmark in turn (each in its own process, so one's memory and
threads do not disturb the next; each validates its results before it times them), then draws
summary.png from the CSVs in the output folder (common.RESULTS).

    python benchmarks/run_all.py [--quick]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from common import RESULTS

HERE = Path(__file__).resolve().parent
# One benchmark per op (as ops/ has one module per op), then layers, then training.
OP_SCRIPTS = ["bench_optim.py", "bench_norm.py", "bench_dropout.py", "bench_batchnorm.py", "bench_layernorm.py",
              "bench_loss.py", "bench_gemm.py", "bench_conv.py", "bench_pooling.py"]
SCRIPTS = OP_SCRIPTS + ["bench_modules.py", "bench_train.py", "bench_resnet.py"]


def _ours(impl: str) -> bool:
    return impl == "fused" or impl.startswith("fusetrain") and "numpy" not in impl


def plot_summary(results: Path) -> Path | None:
    """Horizontal bars of fusetrain's speed-up over PyTorch and over NumPy, one row per benchmark
    and shape (the latest row of each in the CSVs)."""
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
                if _ours(row.get("impl", "")) and (row.get("speedup_vs_torch") or row.get("speedup_vs_numpy")):
                    latest[(row["bench"], row["impl"], row["shape"])] = row
    if not latest:
        return None
    labels = []
    for bench, impl, shape in latest:
        variant = "" if impl in ("fused", "fusetrain", "fusetrain fused") else f" [{impl.replace('fusetrain ', '')}]"
        labels.append(f"{bench}{variant}: {shape[:48]}")
    vs_torch = [float(r["speedup_vs_torch"] or 0) for r in latest.values()]
    vs_numpy = [float(r["speedup_vs_numpy"] or 0) for r in latest.values()]
    ys = range(len(labels))
    fig, ax = plt.subplots(figsize=(11, 0.32 * len(labels) + 1.5))
    ax.barh([y - 0.2 for y in ys], vs_torch, height=0.4, label="vs PyTorch CPU (same run)")
    ax.barh([y + 0.2 for y in ys], vs_numpy, height=0.4, label="vs the NumPy twin (same run)")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(list(ys), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("speed-up (x, higher is better; 1 = parity)")
    ax.set_title("fusetrain speed-ups, each measured against its baselines in one run")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out = results / "summary.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
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
        cmd = [sys.executable, str(script)] + (["--repeats", "5"] if args.quick and name in OP_SCRIPTS else [])
        print(f"\n=== {name} ===", flush=True)
        if subprocess.call(cmd, cwd=HERE) != 0:
            failed.append(name)
    out = plot_summary(RESULTS)
    if out:
        print("chart:", out)
    if failed:
        print("failed:", ", ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
