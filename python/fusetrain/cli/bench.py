"""``fusetrain bench``: find the benchmarks of a source checkout, list them, and run them with their
results going to an output folder (never into the repository's published results)."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path


def bench_dir():
    """The checkout's benchmarks/ folder (beside the package, or under the working directory)."""
    here = Path(__file__).resolve()
    for cand in (here.parents[3] / "benchmarks", Path.cwd() / "benchmarks"):
        if (cand / "common.py").exists():
            return cand
    return None


def available(folder=None):
    """(name, first sentence of the script's docstring) for each benchmarks/bench_<name>.py."""
    folder = folder or bench_dir()
    if folder is None:
        return []
    out = []
    for path in sorted(folder.glob("bench_*.py")):
        try:
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        except (OSError, SyntaxError, ValueError):
            doc = ""
        first = " ".join(doc.split("\n\n")[0].split())
        out.append((path.stem[len("bench_"):], first.split(". ")[0].rstrip(".:")))
    return out


def run(args, extra):
    """Run the named benchmarks (all of them through run_all.py when none is named); returns the exit status."""
    folder = bench_dir()
    if folder is None:
        print("fusetrain bench: error: no benchmarks/ folder found. The benchmarks ship with the source checkout, "
              "not the installed package: clone the repository, install it with pip install -e ., and run "
              "'fusetrain bench' from there.", file=sys.stderr)
        return 2
    names = [name for name, _ in available(folder)]
    unknown = [n for n in args.names if n not in names]
    if unknown:
        print(f"fusetrain bench: error: unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(names)}",
              file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # the scripts (and run_all's children) read their output folder from their environment
    env = dict(os.environ, FUSETRAIN_BENCH_OUT=str(out))
    print(f"fusetrain bench: results go to {out}", flush=True)
    if not args.names:
        cmd = [sys.executable, str(folder / "run_all.py")] + (["--quick"] if args.quick else [])
        return subprocess.call(cmd, cwd=folder, env=env)
    status = 0
    for name in args.names:
        print(f"=== bench_{name}.py ===", flush=True)
        status = subprocess.call([sys.executable, str(folder / f"bench_{name}.py")] + extra, cwd=folder,
                                 env=env) or status
    return status
