"""Data-parallel training on one machine: 1 process x 2 threads against 2 ranks x 1 thread (MPI), on
bench_zoo's MLP recipe and ResNet-20, with the gradient all-reduce overlapped with backward or not.

What is measured, per model (zoo_models.py; the same global batch everywhere: 128 in one process,
64 per rank on two):
* samples/s of the training step (zero_grad, forward, cross-entropy, backward, optimizer step;
  the MLP recipe with AdamW and clipping by global norm 1.0, ResNet-20 with momentum SGD), timed
  over a fixed number of steps after a warm-up, between two barriers, on rank 0. The ranks run a
  hand-written loop around ``fusetrain.distributed.DistributedDataParallel`` (the same reducer
  the Trainer uses); the single process runs the same loop without it. The first weight layer
  skips its input gradient, as in bench_zoo.
* the all-reduce: gradient bytes per step; the time of one blocking all-reduce of the whole
  gradient arena plus the division by the number of ranks (what one step would wait for without
  overlap; median of 20, ranks started together by a barrier); its GB/s (bytes / time) and bus
  GB/s (2(N-1)/N x bytes / time, the traffic of a ring all-reduce per rank).
* exposed: milliseconds per step each rank spent in the reducer (starting and testing buckets
  during backward, waiting for them, dividing by the number of ranks), averaged over the ranks,
  in as many more steps; wait: the part of it spent waiting for the other rank to end its
  backward (from both ranks' end times on the machine's monotonic clock); comm = exposed - wait:
  the communication not hidden behind backward. With overlap off the reducer starts every
  bucket after backward and waits, so all of it is exposed: hidden = 1 - comm with overlap /
  comm without.
* early: buckets per step started while backward was still running (out of "buckets").
* the same two ranks without any communication (each trains on its own): the most data
  parallelism can reach on this machine, the two ranks sharing its cores and memory.
Every configuration runs in fresh processes (OMP_NUM_THREADS and fusetrain's own pool set to its
thread count), in interleaved rounds (single, ranks, ranks without overlap, single, ...); the
table gives the medians over the rounds (and the range of samples/s) and the ratio of each median
to the single process's.

    PYTHONPATH=python python benchmarks/bench_distributed.py [--quick] [--models mlp_recipe,resnet20]
        [--rounds N] [--out DIR]

Needs mpi4py and an mpiexec (pip install ".[mpi]"). Rows are appended to <out>/distributed.csv
and the table written to <out>/distributed.md (common.RESULTS: runs/bench, or FUSETRAIN_BENCH_OUT).
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
STEPS = {"mlp_recipe": 60, "resnet20": 10}  # timed steps per run: a few seconds each on 2 cores
WARMUP = 3
MODES = ("single", "ranks", "ranks-no-overlap", "ranks-no-comm")
LABELS = {"single": "1 process x 2 threads", "ranks": "2 ranks x 1 thread", "ranks-no-overlap":
          "2 ranks x 1 thread, no overlap", "ranks-no-comm": "2 ranks x 1 thread, no communication"}


# ---------------------------------------------------------------- one run (in a fresh process)


def worker(name, mode, steps, bucket_cap_mb):
    import fusetrain
    import fusetrain.distributed as dist
    from fusetrain import _core, nn, optim
    from zoo_models import ZOO, make_optimizer
    from fusetrain.models._common import ready

    dist.init()
    rank, size = dist.get_rank(), dist.get_world_size()
    threads = 2 if mode == "single" else 1
    _core.set_num_threads(threads)
    builder, shape, opt_kind = ZOO[name]
    batch = shape[0] // size
    rng = np.random.default_rng(rank)
    x = rng.standard_normal((batch,) + tuple(shape[1:])).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int64)
    fusetrain.manual_seed(0)
    model = ready(builder(nn))  # as the ready models: one arena, no gradient for the data
    reduced = mode in ("ranks", "ranks-no-overlap")
    net = model
    if reduced:
        net = dist.DistributedDataParallel(model, bucket_cap_mb=bucket_cap_mb, overlap=mode == "ranks")
    opt = make_optimizer(optim, opt_kind, net.parameters())
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss_fn(net(x), y)
        net.backward(loss_fn.backward())
        opt.step()

    for _ in range(WARMUP):
        step()
    stats0 = net.comm_stats if reduced else None
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dist.barrier()
    seconds = time.perf_counter() - t0
    result = {"model": name, "mode": mode, "threads": threads, "ranks": size, "batch_per_rank": batch,
              "samples_per_s": steps * batch * size / seconds, "step_ms": 1e3 * seconds / steps}
    if reduced:
        stats = net.comm_stats
        reducer = net._reducer
        result.update(bytes=stats["bytes"], buckets=len(reducer._buckets),
                      early=(stats["early"] - stats0["early"]) / steps,
                      allreduce_ms=1e3 * _blocking_all_reduce(dist, reducer, size),
                      **_exposure(dist, reducer, model, opt, loss_fn, x, y, steps))
    if rank == 0:
        print(json.dumps(result), flush=True)


def _blocking_all_reduce(dist, reducer, size):
    """Seconds of one blocking all-reduce of the whole gradient arena and the division by the
    number of ranks, the ranks started together (median of 20)."""
    times = []
    for _ in range(20):
        dist.barrier()
        t = time.perf_counter()
        for r in reducer._regions:
            reducer._transport.all_reduce(r.grad)
            r.grad *= np.float32(1.0 / size)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _exposure(dist, reducer, model, opt, loss_fn, x, y, steps):
    """Milliseconds per step, averaged over the steps and the ranks, that the reducer held up this
    rank (exposed), how much of that was waiting for the other rank to end its backward (told by
    the end times of every rank's backward on the machine's monotonic clock), and the rest: the
    communication not hidden behind backward."""
    exposed, waiting = [], []
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model(x), y)
        before = reducer.stats["exposed_s"]
        reducer.begin()
        model.backward(loss_fn.backward())
        end = time.clock_gettime(time.CLOCK_MONOTONIC)
        reducer.finish()
        exposed.append(reducer.stats["exposed_s"] - before)
        waiting.append(min(exposed[-1], max(dist_world_ends(dist, end)) - end))
        opt.step()
    mine = np.array([np.mean(exposed), np.mean(waiting)])
    both = dist.all_reduce(mine, op="mean")
    return {"exposed_ms": 1e3 * both[0], "wait_ms": 1e3 * both[1], "comm_ms": 1e3 * (both[0] - both[1])}


def dist_world_ends(dist, end):
    """Every rank's backward end time."""
    ends = np.zeros(dist.get_world_size())
    ends[dist.get_rank()] = end
    return dist.all_reduce(ends)


# ---------------------------------------------------------------- the driver


def _mpiexec():
    return shutil.which("mpiexec") or shutil.which("mpiexec", path=str(Path(sys.executable).parent))


def run(name, mode, steps, bucket_cap_mb):
    """One configuration in fresh processes; returns rank 0's JSON result."""
    threads = "2" if mode == "single" else "1"
    env = dict(os.environ, OMP_NUM_THREADS=threads)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--mode", mode, "--steps", str(steps),
           "--bucket-cap-mb", str(bucket_cap_mb)]
    if mode != "single":
        cmd = [_mpiexec(), "-n", "2"] + cmd
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=HERE, timeout=900).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="mlp_recipe,resnet20")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="one round, a third of the steps")
    p.add_argument("--bucket-cap-mb", type=float, default=1.0)
    p.add_argument("--out", default=None)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.worker, args.mode, args.steps, args.bucket_cap_mb)
    if _mpiexec() is None:
        sys.exit("bench_distributed: needs mpi4py and an mpiexec: pip install '.[mpi]'")
    sys.path.insert(0, str(HERE))
    from common import RESULTS, cpu_name

    out = Path(args.out) if args.out else RESULTS
    rounds = 1 if args.quick else args.rounds
    cpu = f"{cpu_name()}, {os.cpu_count()} cpus"
    print(f"bench_distributed: {cpu}; {rounds} round(s); bucket cap {args.bucket_cap_mb} MiB", flush=True)
    rows = []
    for name in args.models.split(","):
        steps = max(2, STEPS[name] // 3) if args.quick else STEPS[name]
        results = {mode: [] for mode in MODES}
        for _ in range(rounds):
            for mode in MODES:
                results[mode].append(run(name, mode, steps, args.bucket_cap_mb))
        med = {mode: {k: statistics.median(r[k] for r in rs) for k in rs[0] if isinstance(rs[0][k], (int, float))}
               for mode, rs in results.items()}
        for mode in MODES:
            m = med[mode]
            spread = [r["samples_per_s"] for r in results[mode]]
            row = {"model": name, "config": LABELS[mode], "samples_per_s": round(m["samples_per_s"]),
                   "range": f"{min(spread):.0f}-{max(spread):.0f}",
                   "vs_single": round(m["samples_per_s"] / med["single"]["samples_per_s"], 3),
                   "step_ms": round(m["step_ms"], 2)}
            if "bytes" in m:
                mb = m["bytes"] / 1e6
                row.update(grad_mb=round(mb, 2), buckets=int(m["buckets"]), early=round(m["early"], 1),
                           allreduce_ms=round(m["allreduce_ms"], 2), gb_per_s=round(mb / m["allreduce_ms"], 2),
                           # a ring moves 2(N-1)/N x the bytes per rank: 1 x for N = 2
                           bus_gb_per_s=round(mb / m["allreduce_ms"], 2), exposed_ms=round(m["exposed_ms"], 2),
                           wait_ms=round(m["wait_ms"], 2), comm_ms=round(m["comm_ms"], 2),
                           hidden=round(1 - m["comm_ms"] / med["ranks-no-overlap"]["comm_ms"], 3))
            rows.append(row)
            print(json.dumps(row), flush=True)
    _write(out, rows, cpu, rounds)


COLUMNS = ["model", "config", "samples_per_s", "range", "vs_single", "step_ms", "grad_mb", "buckets", "early",
           "allreduce_ms", "gb_per_s", "bus_gb_per_s", "exposed_ms", "wait_ms", "comm_ms", "hidden"]


def _write(out, rows, cpu, rounds):
    out.mkdir(parents=True, exist_ok=True)
    date = _dt.date.today().isoformat()
    path = out / "distributed.csv"
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["date", "machine", "rounds"] + COLUMNS)
        if new:
            w.writeheader()
        for r in rows:
            w.writerow({"date": date, "machine": cpu, "rounds": rounds, **r})
    lines = [f"Measured {date} on {cpu} (medians of {rounds} interleaved round(s)).", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in COLUMNS) + " |" for r in rows]
    (out / "distributed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {path} and {out / 'distributed.md'}")


if __name__ == "__main__":
    main()
