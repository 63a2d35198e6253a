"""The model zoo: training and inference throughput of standard architectures, fusetrain vs PyTorch
CPU vs fusetrain's own NumPy twins, plus how fusetrain trains on a busy machine.

Models (zoo_models.py; each written once and built from fusetrain.nn and from torch.nn):
LeNet-5 (64,1,28,28); ResNet-20 for CIFAR (128,3,32,32); a VGG-style net with BatchNorm after every
conv (64,3,32,32); a MobileNet-style depthwise-separable net (64,3,32,32); a strided Conv1d net for
MNIST-1D (100,1,40); an MLP 64-256-256-10 for the 8x8 digits (32,64); bench_train.py's MLP recipe
784-1024-1024-10 with BN, ReLU and Dropout(0.3) (128,784).

How:
* The torch model gets the fusetrain model's initial weights (state_dict keys are PyTorch's), the
  NumPy-twin model too (a third instance, run under ``use_backend("numpy")``). Inputs are fixed
  standard-normal arrays and random labels.
* Training step = zero_grad, forward, cross-entropy, backward, optimizer step: SGD lr 0.01 momentum
  0.9, except the MLP recipe (AdamW lr 1e-3, weight decay 1e-2, clipping by global norm 1.0:
  ``AdamW(max_grad_norm=1.0)`` vs ``clip_grad_norm_`` + ``AdamW(fused=True)``). fusetrain's first
  weight layer skips its input gradient (``input_grad = False``), as torch does for an input that
  does not require grad. Inference = eval-mode forward (torch under ``inference_mode``), on
  separate instances so no step switches modes.
* Validation before any timing: for every selected model, the eval-mode logits at the shared
  initial weights and the losses of two training steps (dropout off for this check: masks differ
  by design) must agree with torch's (rtol 1e-3, atol 1e-4), and the eval-mode logits after the
  steps must be within 1% of how far the steps moved torch's logits (AdamW turns float32 rounding
  near zero into +-lr moves); the twins' too. Any disagreement is printed and the script exits
  with status 1 without timing anything.
* Timing: all of one model's jobs (fusetrain, torch, twin; train and infer) in one process, in
  interleaved rounds, so drifts of this shared machine hit every implementation alike. A sample
  is as many back-to-back calls as fill ~0.1 s (one call for the big models); before each sample
  the script sleeps 0.1 s so the spinning worker threads of the previous job (torch's and
  OpenBLAS's spin for milliseconds after a kernel, fusetrain's for ~50 us) do not eat into the next one.
  The slow twins run in only some rounds (spread evenly). Medians and 20th/80th percentiles.
* torch runs with 2 threads (common.try_torch), fusetrain with its default threads (its own pool,
  whose idle workers spin ~50 us and then sleep; torch's OpenMP threads spin longer, hence the
  pause above).
* Work per step: multiply-adds of the convolutions and linear layers counted from the layer shapes
  (zoo_models.count_macs); FLOPs = 2 x MACs for inference, 3 x that for a training step (forward,
  input gradient, weight gradient; the skipped first-layer input gradient is still counted). The
  yardstick ("peak") is fusetrain.ops' FMA probe: register multiply-adds on every kernel thread,
  the most the convolution and GEMM kernels could reach, timed as a job of the model's own
  interleaved rounds (in a third of them) so it sees the same machine as the model. The 2048^3
  float32 GEMMs of numpy.matmul (OpenBLAS), torch.mm and fusetrain.ops.matmul are timed the same
  way, for reference. "%peak" = effective GFLOP/s / FMA probe.
* Busy machine (--no-busy skips): samples/s of the digits MLP's Trainer.fit (batch 32, SGD,
  verbose=0, fit wall time) (a) on the machine as it is, (b) beside one competing process that
  spins a pure-Python loop (started before, killed after), (a') with a callback whose
  on_train_batch_end does nothing, (c) with a callback that does a NumPy 256x256 @ 256x256 matmul
  in on_train_batch_end. (b) is reported as a fraction of (a), (c) as a fraction of (a') and next
  to what (c) would be if the matmul only added its own standalone time. The same for a plain
  torch loop (shuffle, batches, loss.item(), accuracy, as a Keras-style trainer does).

Results: a printed table; rows appended to <out>/zoo.csv and the markdown table <out>/zoo.md
(overwritten) in --out, default the benchmarks' output folder (common.RESULTS: runs/bench, or
FUSETRAIN_BENCH_OUT).

    PYTHONPATH=python python benchmarks/bench_zoo.py [--quick] [--models lenet,resnet20,...] [--no-numpy]
        [--no-busy] [--repeats N] [--out DIR]
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import fusetrain
from fusetrain import nn, optim
from fusetrain.backend import use_backend
from common import RESULTS, machine, try_torch
from fusetrain.models._common import ready
from zoo_models import ZOO, count_macs, make_optimizer, torch_nn

RTOL, ATOL = 1e-3, 1e-4  # logits and losses against torch's
MOVED_RTOL = 1e-2  # logits after two training steps: error / how far the steps moved torch's logits
SETTLE_S = 0.1  # pause before each sample: the previous job's spinning worker threads go to sleep
CSV_FIELDS = ["date", "machine", "section", "model", "batch", "impl", "phase", "median_ms", "p20_ms", "p80_ms",
              "samples_per_s", "gflop", "gflop_per_s", "pct_of_fma_peak", "vs_torch", "vs_numpy_twin",
              "fraction", "note"]
IMPLS = {"fused": "fusetrain", "torch": "torch", "twin": "numpy twin"}


# ---------------------------------------------------------------- timing

def interleaved(jobs, rounds, min_sample_s=0.1, sparse=None):
    """Times jobs {name: fn} in ``rounds`` interleaved rounds; returns {name: (median, p20, p80)}
    in seconds per call. Each sample is ceil(min_sample_s / one call) back-to-back calls, after a
    SETTLE_S pause. A job in ``sparse`` {name: samples} (the slow twins, the GEMM probes) takes
    only that many samples, in rounds spread evenly over the run."""
    sparse = sparse or {}
    calls = {}
    for name, fn in jobs.items():  # warm-up (buffers, packing, pages), and the calls per sample
        time.sleep(SETTLE_S)
        t0 = time.perf_counter()
        fn()
        t = time.perf_counter() - t0
        if t < min_sample_s:
            t0 = time.perf_counter()
            fn()
            t = time.perf_counter() - t0
        calls[name] = max(1, math.ceil(min_sample_s / max(t, 1e-6)))
    samples = {name: [] for name in jobs}
    for r in range(rounds):
        for name, fn in jobs.items():
            k = sparse.get(name)
            if k is not None and (r + 1) * k // rounds == r * k // rounds:
                continue
            time.sleep(SETTLE_S)
            n = calls[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - t0) / n)
    return {name: (float(np.median(s)), float(np.percentile(s, 20)), float(np.percentile(s, 80)))
            for name, s in samples.items()}


# ---------------------------------------------------------------- the implementations of one model

class Contender:
    """One implementation of one zoo model: a training instance and an eval-mode instance with the
    same initial weights, ``step()`` (one training step, returns the loss) and ``infer()``
    (returns the logits as a NumPy array)."""

    def __init__(self, impl, name, state, x, y, torch=None):
        builder, _, opt_kind = ZOO[name]
        self.impl, self.x, self.torch = impl, x, torch
        if impl == "torch":
            tnn = torch_nn(torch)
            self.train_model, self.eval_model = builder(tnn), builder(tnn)
            sd = {k: torch.from_numpy(np.array(v)) for k, v in state.items()}
            for m in (self.train_model, self.eval_model):
                m.load_state_dict(sd)
            self.train_model.train()
            self.eval_model.eval()
            self._torch_fns(torch, opt_kind, x, y)
        else:
            self.train_model, self.eval_model = builder(nn), builder(nn)
            for m in (self.train_model, self.eval_model):
                m.load_state_dict(state)
                ready(m)  # as the ready models: one arena, no gradient for the data
            self.train_model.train()
            self.eval_model.eval()
            self._fusetrain_fns(opt_kind, x, y, "numpy" if impl == "twin" else "fused")

    def _fusetrain_fns(self, opt_kind, x, y, backend):
        model, eval_model = self.train_model, self.eval_model
        opt = make_optimizer(optim, opt_kind, model.parameters())
        loss_fn = nn.CrossEntropyLoss()

        def step():
            with use_backend(backend):
                opt.zero_grad()
                loss = loss_fn(model(x), y)
                model.backward(loss_fn.backward())
                opt.step()
            return loss

        def infer():
            with use_backend(backend):
                return eval_model(x)
        self.step, self.infer = step, infer

    def _torch_fns(self, torch, opt_kind, x, y):
        model, eval_model = self.train_model, self.eval_model
        params = list(model.parameters())
        clip = opt_kind != "sgd"
        if opt_kind == "sgd":
            opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
        else:
            try:
                opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2, fused=True)
            except (RuntimeError, TypeError):  # a torch without the fused CPU AdamW
                opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2)
        loss_fn = torch.nn.CrossEntropyLoss()
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xt), yt)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            return loss.item()

        def infer():
            with torch.inference_mode():
                return eval_model(xt).numpy()
        self.step, self.infer = step, infer

    def eval_logits_of_trained(self):
        """The training instance's eval-mode logits (then back to training mode)."""
        m = self.train_model
        m.eval()
        try:
            if self.impl == "torch":
                with self.torch.inference_mode():
                    return m(self.torch.from_numpy(self.x)).numpy()
            with use_backend("numpy" if self.impl == "twin" else "fused"):
                return np.array(m(self.x))
        finally:
            m.train()


def build(name, impls, torch):
    """The contenders of one zoo model, all with fusetrain's seeded initial weights; returns
    ({impl: Contender}, (macs per forward, input shape))."""
    builder, shape, _ = ZOO[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, 10, shape[0]).astype(np.int64)
    fusetrain.manual_seed(0)
    reference = builder(nn)
    macs, out_shape = count_macs(reference, shape)
    assert out_shape == (shape[0], 10), out_shape
    state = reference.state_dict()
    return {impl: Contender(impl, name, state, x, y, torch) for impl in impls}, macs


# ---------------------------------------------------------------- validation

@contextlib.contextmanager
def dropout_off(models):
    """Dropout p = 0 in these models (fusetrain's or torch's) for the duration."""
    drops = [m for model in models for m in model.modules() if type(m).__name__ == "Dropout"]
    saved = [d.p for d in drops]
    for d in drops:
        d.p = 0.0
    try:
        yield
    finally:
        for d, p in zip(drops, saved):
            d.p = p


def _close(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and bool(np.all(np.isfinite(a))) and np.allclose(a, b, rtol=RTOL, atol=ATOL)


def _diff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return f"shapes {a.shape} vs {b.shape}"
    d = np.abs(a - b)
    return f"max |diff| {d.max():.3g} (max |torch| {np.abs(b).max():.3g})"


def validate(name, contenders):
    """Compares every contender with torch: eval logits at the initial weights and the losses of two
    training steps (rtol 1e-3, atol 1e-4), eval logits after the steps (within 1% of how far the
    steps moved torch's). Returns a list of failure messages (empty: all agree)."""
    ref = contenders["torch"]
    others = [c for k, c in contenders.items() if k != "torch"]
    failures = []
    want = before = np.array(ref.infer())
    for c in others:
        got = np.array(c.infer())
        if not _close(got, want):
            failures.append(f"{name}: {IMPLS[c.impl]} eval logits at the initial weights differ: {_diff(got, want)}")
    with dropout_off([c.train_model for c in contenders.values()]):
        for k in (1, 2):
            want = ref.step()
            for c in others:
                got = c.step()
                if not _close(got, want):
                    failures.append(f"{name}: {IMPLS[c.impl]} loss of training step {k} is {got:.6g}, "
                                    f"torch's {want:.6g}")
    # After training, the yardstick is how far the steps moved torch's logits: Adam's first steps
    # move every weight by about +-lr whatever its gradient's size, so a gradient or a ReLU input
    # within float32 rounding of 0 can move a whole row of weights differently (seen: one unit of
    # the MLP recipe, logits off by 1e-3 after logits moved by ~1).
    after = ref.eval_logits_of_trained()
    moved = float(np.abs(after - before).max())
    for c in others:
        got = c.eval_logits_of_trained()
        err = float(np.abs(np.asarray(got, np.float64) - after).max()) if got.shape == after.shape else math.inf
        if not err <= MOVED_RTOL * moved + ATOL:
            failures.append(f"{name}: {IMPLS[c.impl]} eval logits after two training steps differ from torch's by "
                            f"{err:.3g}, more than {MOVED_RTOL:g} x the {moved:.3g} the steps moved torch's logits")
    return failures


# ---------------------------------------------------------------- GEMM yardstick

GEMM_N = 2048
FMA_PROBE = "fusetrain.ops FMA probe"


def gemm_jobs(torch, n=GEMM_N):
    """The GEMM probes, {name: fn}: one n x n x n float32 matrix product (2 n^3 FLOPs) by OpenBLAS
    (numpy.matmul), torch.mm and fusetrain.ops.matmul (fusetrain's C++ GEMM)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    tc = torch.empty((n, n))
    return {"numpy.matmul (OpenBLAS)": lambda: np.matmul(a, b, out=c),
            "torch.mm": lambda: torch.mm(ta, tb, out=tc),
            "fusetrain.ops.matmul": lambda: fusetrain.ops.matmul(a, b, c)}


FMA_ITERS = 1 << 20  # register multiply-add rounds per thread and FMA probe sample (~50 ms on 2 Zen 4 cores)


def fma_job():
    """The FMA probe as a job of the interleaved rounds: returns (fn, FLOPs per call)."""
    core = fusetrain.backend._core
    flops = core.probe_fma(FMA_ITERS)
    return (lambda: core.probe_fma(FMA_ITERS)), flops


# ---------------------------------------------------------------- busy machine

@contextlib.contextmanager
def competitor():
    """One other process spinning a pure-Python loop on whichever core the OS gives it."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start and reach its loop
        yield
    finally:
        proc.kill()
        proc.wait()


# condition -> (what runs between steps, with the competing process?, the condition it is a fraction of)
BUSY_CONDITIONS = {"idle": (None, False, None), "busy": (None, True, "idle"),
                   "noop_callback": ("noop", False, None), "matmul_callback": ("matmul", False, "noop_callback")}


def busy_section(torch, rounds, epochs):
    """Fit throughput of the digits MLP, fusetrain's Trainer and a torch loop, under the conditions
    of the module docstring, interleaved in ``rounds`` rounds. Returns (rows, standalone matmul
    seconds, samples per fit)."""
    from fusetrain.callbacks import Callback
    from fusetrain.data import load_digits
    from zoo_models import mlp_digits

    (x, y), _ = load_digits()
    batch = 32
    rng = np.random.default_rng(0)
    ma, mb = rng.standard_normal((256, 256), dtype=np.float32), rng.standard_normal((256, 256), dtype=np.float32)
    between_fns = {"noop": lambda: None, "matmul": lambda: ma @ mb}

    class Between(Callback):
        def __init__(self, fn):
            self.fn = fn

        def on_train_batch_end(self, batch, logs=None):
            self.fn()

    fusetrain.manual_seed(0)
    fmodel = mlp_digits(nn)
    fmodel.flatten_parameters()
    trainer = fusetrain.Trainer(fmodel, optim.SGD(fmodel.parameters(), lr=0.01, momentum=0.9))

    def fused_fit(between=None):
        trainer.fit(x, y, epochs=epochs, batch_size=batch, verbose=0,
                    callbacks=None if between is None else [Between(between)])

    tmodel = mlp_digits(torch_nn(torch))
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in fmodel.state_dict().items()})
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9)
    tloss = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(0)

    def torch_fit(between=None):
        tmodel.train()
        for _ in range(epochs):
            order = torch.randperm(len(xt), generator=gen)
            loss_sum, correct = 0.0, 0
            for lo in range(0, len(xt), batch):
                idx = order[lo:lo + batch]
                xb, yb = xt[idx], yt[idx]
                out = tmodel(xb)
                loss = tloss(out, yb)
                topt.zero_grad(set_to_none=True)
                loss.backward()
                topt.step()
                loss_sum += loss.item() * len(idx)
                correct += int((out.argmax(1) == yb).sum())
                if between is not None:
                    between()

    fits = {"fusetrain": fused_fit, "torch": torch_fit}
    for fit in fits.values():
        fit()  # warm-up
    secs = {(impl, cond): [] for impl in fits for cond in BUSY_CONDITIONS}
    for _ in range(rounds):
        for cond, (between, busy, _) in BUSY_CONDITIONS.items():
            with competitor() if busy else contextlib.nullcontext():
                for impl, fit in fits.items():
                    time.sleep(SETTLE_S)
                    t0 = time.perf_counter()
                    fit(between_fns.get(between))
                    secs[(impl, cond)].append(time.perf_counter() - t0)
    mm_s = interleaved({"matmul": between_fns["matmul"]}, 5, min_sample_s=0.05)["matmul"][0]
    n, steps = epochs * len(x), epochs * math.ceil(len(x) / batch)
    sps = {k: n / float(np.median(v)) for k, v in secs.items()}
    rows = []
    for impl in fits:
        for cond, (_, _, base) in BUSY_CONDITIONS.items():
            s, t = sps[(impl, cond)], np.array(secs[(impl, cond)])
            row = {"impl": impl, "phase": cond, "samples_per_s": s,
                   "fraction": None if base is None else s / sps[(impl, base)], "base": base,
                   "times": (float(np.median(t)), float(np.percentile(t, 20)), float(np.percentile(t, 80))), "note": ""}
            if cond == "matmul_callback":
                additive = n / (n / sps[(impl, "noop_callback")] + steps * mm_s)
                row["note"] = f"additive expectation {additive:,.0f} samples/s ({s / additive:.2f} of it)"
            rows.append(row)
    return rows, mm_s, n


# ---------------------------------------------------------------- output

def fmt(v, digits=0):
    if v is None:
        return "-"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def print_table(header, lines):
    widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for l in lines:
        print("  ".join(c.rjust(w) for c, w in zip(l, widths)))


def _numeric(cell):
    try:
        float(cell.replace(",", ""))
        return True
    except ValueError:
        return cell == "-"


def markdown(header, lines):
    right = [all(_numeric(l[i]) for l in lines) for i in range(len(header))]
    rule = "|" + "|".join("---:" if r else "---" for r in right) + "|"
    out = ["| " + " | ".join(header) + " |", rule]
    out += ["| " + " | ".join(l) + " |" for l in lines]
    return "\n".join(out)


def blas_threads() -> str:
    """How many threads numpy's BLAS runs (threadpoolctl, when installed), for the report."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS threads unknown"
    blas = [f"{p['internal_api']} {p['num_threads']} threads" for p in threadpool_info() if p["user_api"] == "blas"]
    return "numpy BLAS: " + (", ".join(blas) or "none found")


ZOO_HEADER = ["model", "batch", "train ft", "train torch", "ft/torch", "ft/twin", "infer ft", "infer torch", "ft/torch",
              "ft/twin", "GFLOP/s ft", "GFLOP/s torch", "peak", "%peak ft", "%peak torch"]
BUSY_HEADER = ["impl", "condition", "samples/s", "fraction", "note"]
BUSY_LABELS = {"idle": "(a)", "busy": "(b) + 1 busy process", "noop_callback": "(a') no-op callback",
               "matmul_callback": "(c) matmul callback"}


class Report:
    """The CSV rows of one run, all sharing its date and machine."""

    def __init__(self, date, mach):
        self.date, self.machine, self.rows = date, mach, []

    def add(self, section, model, batch, impl, phase, times=None, **extra):
        row = {"date": self.date, "machine": self.machine, "section": section, "model": model, "batch": batch,
               "impl": impl, "phase": phase}
        if times is not None:
            row.update(median_ms=round(1e3 * times[0], 4), p20_ms=round(1e3 * times[1], 4),
                       p80_ms=round(1e3 * times[2], 4))
        row.update({k: (round(v, 4) if isinstance(v, float) else v) for k, v in extra.items()})
        self.rows.append(row)

    def save(self, path):
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            if new:
                w.writeheader()
            w.writerows(self.rows)


def time_model(name, impls, torch, rounds, twin_samples, gemms, report):
    """Times one zoo model's jobs and the GEMM probes in interleaved rounds; adds its CSV rows and
    returns (its line of the table, {probe: GFLOP/s})."""
    t0 = time.perf_counter()
    contenders, macs = build(name, impls, torch)
    batch = ZOO[name][1][0]
    jobs = {}
    for impl, c in contenders.items():
        jobs[(impl, "train")] = c.step
        jobs[(impl, "infer")] = c.infer
    jobs.update(gemms)
    fma, fma_flops = fma_job()
    jobs[FMA_PROBE] = fma
    sparse = {("twin", "train"): twin_samples, ("twin", "infer"): twin_samples}
    sparse.update({k: max(1, rounds // 3) for k in list(gemms) + [FMA_PROBE]})
    t = interleaved(jobs, rounds, sparse=sparse)
    del contenders, jobs
    # The yardstick of this model: the FMA probe timed in the same rounds; the GEMMs for reference.
    probes = {k: 2 * GEMM_N ** 3 / t.pop(k)[0] / 1e9 for k in gemms}
    probes[FMA_PROBE] = fma_flops / t.pop(FMA_PROBE)[0] / 1e9
    peak = probes[FMA_PROBE]
    for k, v in probes.items():
        report.add("probe", name, "", k, "", gflop_per_s=v,
                   note=("register multiply-adds on every kernel thread; the yardstick" if k == FMA_PROBE else
                         f"{GEMM_N}^3 float32 GEMM") + f", timed in {name}'s rounds")
    sps = {k: batch / v[0] for k, v in t.items()}
    gflop = {"train": 6 * macs / 1e9, "infer": 2 * macs / 1e9}
    gflops = {k: gflop[k[1]] / v[0] for k, v in t.items()}
    for (impl, phase), times in t.items():
        vs_t = sps[(impl, phase)] / sps[("torch", phase)] if impl != "torch" else None
        vs_n = sps[(impl, phase)] / sps[("twin", phase)] if ("twin", phase) in sps and impl != "twin" else None
        report.add("zoo", name, batch, IMPLS[impl], phase, times, samples_per_s=sps[(impl, phase)], gflop=gflop[phase],
                   gflop_per_s=gflops[(impl, phase)], pct_of_fma_peak=100 * gflops[(impl, phase)] / peak,
                   vs_torch=vs_t, vs_numpy_twin=vs_n)

    def ratio(a, b):
        return fmt(sps[a] / sps[b], 2) if a in sps and b in sps else "-"
    line = [name, str(batch)]
    for phase in ("train", "infer"):
        line += [fmt(sps[("fused", phase)]), fmt(sps[("torch", phase)]),
                 ratio(("fused", phase), ("torch", phase)), ratio(("fused", phase), ("twin", phase))]
    g_ft, g_t = gflops[("fused", "train")], gflops[("torch", "train")]
    line += [fmt(g_ft, 1), fmt(g_t, 1), fmt(peak, 1), fmt(100 * g_ft / peak, 1), fmt(100 * g_t / peak, 1)]
    print(f"timed {name:11s} train {line[2]} vs torch {line[3]} samples/s ({time.perf_counter() - t0:.0f} s)",
          flush=True)
    return line, probes


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few repeats and short fits: a smoke test (< 2 min)")
    ap.add_argument("--models", default=",".join(ZOO), help=f"comma-separated subset of {','.join(ZOO)}")
    ap.add_argument("--no-numpy", action="store_true", help="skip the (slow) NumPy-twin runs")
    ap.add_argument("--no-busy", action="store_true", help="skip the busy-machine section")
    ap.add_argument("--repeats", type=int, help="interleaved rounds per model (default 6, --quick 3)")
    ap.add_argument("--out", type=Path, default=RESULTS,
                    help=f"folder for zoo.csv (appended) and zoo.md (overwritten); default {RESULTS}")
    args = ap.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in ZOO]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(ZOO)}")
    rounds = args.repeats or (3 if args.quick else 6)
    twin_samples = 1 if args.quick else 2
    torch = try_torch()
    if torch is None:
        sys.exit("bench_zoo needs PyTorch: it is the reference of the validation and of the comparison")
    impls = ["fused", "torch"] + ([] if args.no_numpy else ["twin"])
    date, mach = dt.datetime.now().isoformat(timespec="seconds"), machine()
    load = os.getloadavg()
    setup = (f"{mach}; torch {torch.__version__}, {torch.get_num_threads()} threads; numpy {np.__version__}, "
             f"{blas_threads()}")
    print(f"{date}  {setup}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)

    # Check every model before timing any.
    failures = []
    for name in models:
        contenders, _ = build(name, impls, torch)
        f = validate(name, contenders)
        print(f"validate {name:11s} {'ok' if not f else 'FAILED'}", flush=True)
        failures += f
        del contenders
    if failures:
        print("\nVALIDATION FAILED: fusetrain does not compute what torch computes, so nothing was timed:")
        for f in failures:
            print("  " + f)
        sys.exit(1)

    report, gemms = Report(date, mach), gemm_jobs(torch)
    lines, all_probes = [], {}
    for name in models:
        line, probes = time_model(name, impls, torch, rounds, twin_samples, gemms, report)
        lines.append(line)
        for k, v in probes.items():
            all_probes.setdefault(k, []).append(v)
    print()
    print_table(ZOO_HEADER, lines)
    probe_line = ", ".join(f"{k} {np.median(v):.1f}" for k, v in all_probes.items())
    legend = ("samples/s; ft = fusetrain, twin = fusetrain on its NumPy twins; GFLOP/s counts 6 x the conv and linear "
              f"multiply-adds per training sample; peak = the FMA probe (register multiply-adds on every kernel thread) "
              f"timed in the model's rounds (medians over the models, GFLOP/s: {probe_line})")
    print(f"({legend})")

    busy_lines, busy_note = [], ""
    if not args.no_busy:
        t0 = time.perf_counter()
        rows, mm_s, n = busy_section(torch, 1 if args.quick else 3, 2 if args.quick else 5)
        busy_note = (f"digits MLP 64-256-256-10, Trainer.fit (torch: a plain loop) of {n} samples, batch 32, SGD; "
                     f"the 256x256 matmul alone takes {1e3 * mm_s:.3f} ms")
        for r in rows:
            report.add("busy", "mlp_digits", 32, r["impl"], r["phase"], r["times"], samples_per_s=r["samples_per_s"],
                       fraction=r["fraction"], note=r["note"])
            frac = "-" if r["base"] is None else f"{r['fraction']:.2f} of {BUSY_LABELS[r['base']].split()[0]}"
            busy_lines.append([r["impl"], BUSY_LABELS[r["phase"]], fmt(r["samples_per_s"]), frac, r["note"]])
        print(f"\nBusy machine ({time.perf_counter() - t0:.0f} s): " + busy_note)
        print_table(BUSY_HEADER, busy_lines)

    args.out.mkdir(parents=True, exist_ok=True)
    report.save(args.out / "zoo.csv")
    cmd = " ".join(["python benchmarks/bench_zoo.py"] + sys.argv[1:])
    twins = f" ({twin_samples} for the twins)" if "twin" in impls else ""
    md = ["## Model zoo: training and inference throughput\n",
          f"{date}; {setup}; load average {load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (other "
          f"jobs share this machine). Command: `{cmd}`.\n",
          markdown(ZOO_HEADER, lines),
          f"\nMedians of {rounds} interleaved rounds{twins}; {legend}.\n"]
    if busy_lines:
        md += ["### Busy machine\n", busy_note + ".\n", markdown(BUSY_HEADER, busy_lines), ""]
    (args.out / "zoo.md").write_text("\n".join(md) + "\n")
    print(f"\nwrote {args.out / 'zoo.csv'} and {args.out / 'zoo.md'}")


if __name__ == "__main__":
    main()
