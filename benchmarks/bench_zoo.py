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
  the script sleeps 0.1 s so the spinning worker threads of the previous job (fusetrain's OpenMP
  threads spin ~50 ms after a kernel, OpenBLAS's and torch's too) do not eat into the next one.
  The slow twins run in only some rounds (spread evenly). Medians and 20th/80th percentiles.
* torch runs with 2 threads (common.try_torch), fusetrain with its default threads. fusetrain is
  imported first and sets OMP_WAIT_POLICY=ACTIVE / GOMP_SPINCOUNT for its libgomp; torch's own
  libgomp, loaded later, reads the same environment (as in bench_train.py's torch runs).
* Work per step: multiply-adds of the convolutions and linear layers counted from the layer shapes
  (zoo_models.count_macs); FLOPs = 2 x MACs for inference, 3 x that for a training step (forward,
  input gradient, weight gradient; the skipped first-layer input gradient is still counted). The
  yardstick is the best of the GEMM probes timed here on 2048x2048 float32: numpy.matmul
  (OpenBLAS), torch.mm, fusetrain.ops.matmul (its C++ GEMM) and fusetrain.ops.probe_fma if the
  extension has one. "% of peak" = the model's effective GFLOP/s / that best GEMM's GFLOP/s.
* Busy machine (--no-busy skips): samples/s of the digits MLP's Trainer.fit (batch 32, SGD,
  verbose=0, fit wall time) (a) on the machine as it is, (b) beside one competing process that
  spins a pure-Python loop (started before, killed after), (a') with a callback whose
  on_train_batch_end does nothing, (c) with a callback that does a NumPy 256x256 @ 256x256 matmul
  in on_train_batch_end. (b) is reported as a fraction of (a), (c) as a fraction of (a') and next
  to what (c) would be if the matmul only added its own standalone time. The same for a plain
  torch loop (shuffle, batches, loss.item(), accuracy, as a Keras-style trainer does).

Results: a printed table; rows appended to <out>/zoo.csv and the markdown table <out>/zoo.md
(overwritten) in --out, default benchmarks/results/local/ (not tracked).

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
from common import machine, try_torch
from zoo_models import ZOO, count_macs, torch_nn

RTOL, ATOL = 1e-3, 1e-4  # logits and losses against torch's
MOVED_RTOL = 1e-2  # logits after two training steps: error / how far the steps moved torch's logits
SETTLE_S = 0.1  # pause before each sample: the previous job's spinning worker threads go to sleep
CSV_FIELDS = ["date", "machine", "section", "model", "batch", "impl", "phase", "median_ms", "p20_ms", "p80_ms",
              "samples_per_s", "gflop", "gflop_per_s", "pct_of_gemm_peak", "vs_torch", "vs_numpy_twin",
              "fraction", "note"]
IMPLS = {"fused": "fusetrain", "torch": "torch", "twin": "numpy twin"}


# ---------------------------------------------------------------- timing

def interleaved(jobs, rounds, min_sample_s=0.1, sparse=(), sparse_samples=1):
    """Times jobs {name: fn} in ``rounds`` interleaved rounds; returns {name: (median, p20, p80)}
    in seconds per call. Each sample is ceil(min_sample_s / one call) back-to-back calls, after a
    SETTLE_S pause. Jobs named in ``sparse`` (the slow twins) take only ``sparse_samples`` samples,
    in rounds spread evenly over the run."""
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
            if name in sparse and (r + 1) * sparse_samples // rounds == r * sparse_samples // rounds:
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
                m.flatten_parameters()
            first = next(m for m in self.train_model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)))
            first.input_grad = False
            self.train_model.train()
            self.eval_model.eval()
            self._fusetrain_fns(opt_kind, x, y, "numpy" if impl == "twin" else "fused")

    def _fusetrain_fns(self, opt_kind, x, y, backend):
        model, eval_model = self.train_model, self.eval_model
        if opt_kind == "sgd":
            opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        else:
            opt = optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2, max_grad_norm=1.0)
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

def gemm_probes(torch, rounds, n=2048):
    """GFLOP/s of an n x n x n float32 matrix product by OpenBLAS (numpy.matmul), torch.mm and
    fusetrain.ops.matmul, interleaved; plus fusetrain.ops.probe_fma() when the extension has one."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    tc = torch.empty((n, n))
    jobs = {"numpy.matmul (OpenBLAS)": lambda: np.matmul(a, b, out=c),
            "torch.mm": lambda: torch.mm(ta, tb, out=tc),
            "fusetrain.ops.matmul": lambda: fusetrain.ops.matmul(a, b, c)}
    t = interleaved(jobs, rounds, min_sample_s=0.2)
    res = {k: 2 * n ** 3 / v[0] / 1e9 for k, v in t.items()}
    probe = getattr(fusetrain.ops, "probe_fma", None)
    if probe is not None:
        try:
            res["fusetrain.ops.probe_fma"] = float(probe())
        except Exception as exc:  # an API this script does not know yet: say so, keep the GEMM probes
            print(f"fusetrain.ops.probe_fma() could not be used: {type(exc).__name__}: {exc}")
    return res


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


def busy_section(torch, rounds, epochs):
    """Fit throughput of the digits MLP, fusetrain's Trainer and a torch loop, under the conditions
    of the module docstring. Returns (rows, standalone matmul seconds, samples per fit)."""
    from fusetrain.callbacks import Callback
    from fusetrain.data import load_digits
    from zoo_models import mlp_digits

    (x, y), _ = load_digits()
    batch = 32
    rng = np.random.default_rng(0)
    ma, mb = rng.standard_normal((256, 256), dtype=np.float32), rng.standard_normal((256, 256), dtype=np.float32)

    def matmul():
        return ma @ mb

    class Noop(Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass

    class Matmul(Callback):
        def on_train_batch_end(self, batch, logs=None):
            matmul()

    fusetrain.manual_seed(0)
    fmodel = mlp_digits(nn)
    fmodel.flatten_parameters()
    trainer = fusetrain.Trainer(fmodel, optim.SGD(fmodel.parameters(), lr=0.01, momentum=0.9))

    def fused_fit(cb=None):
        trainer.fit(x, y, epochs=epochs, batch_size=batch, verbose=0, callbacks=[cb] if cb else None)

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

    runs = {("fusetrain", "idle"): fused_fit, ("torch", "idle"): torch_fit,
            ("fusetrain", "noop_callback"): lambda: fused_fit(Noop()), ("torch", "noop_callback"): lambda: torch_fit(lambda: None),
            ("fusetrain", "matmul_callback"): lambda: fused_fit(Matmul()), ("torch", "matmul_callback"): lambda: torch_fit(matmul)}
    busy = {("fusetrain", "busy"): fused_fit, ("torch", "busy"): torch_fit}
    fused_fit(), torch_fit()  # warm-up
    secs = {k: [] for k in list(runs) + list(busy)}

    def timed(key, fn):
        time.sleep(SETTLE_S)
        t0 = time.perf_counter()
        fn()
        secs[key].append(time.perf_counter() - t0)

    for _ in range(rounds):
        for key in (("fusetrain", "idle"), ("torch", "idle")):
            timed(key, runs[key])
        with competitor():
            for key, fn in busy.items():
                timed(key, fn)
        for key, fn in runs.items():
            if key[1] != "idle":
                timed(key, fn)
    mm_s = interleaved({"matmul": matmul}, 5, min_sample_s=0.05)["matmul"][0]
    n = epochs * len(x)
    sps = {k: n / float(np.median(v)) for k, v in secs.items()}
    rows = []
    for impl in ("fusetrain", "torch"):
        base = {"idle": "idle", "busy": "idle", "noop_callback": "noop_callback", "matmul_callback": "noop_callback"}
        for cond in ("idle", "busy", "noop_callback", "matmul_callback"):
            s = sps[(impl, cond)]
            row = {"impl": impl, "phase": cond, "samples_per_s": s, "fraction": s / sps[(impl, base[cond])],
                   "median_ms": 1e3 * float(np.median(secs[(impl, cond)])),
                   "p20_ms": 1e3 * float(np.percentile(secs[(impl, cond)], 20)),
                   "p80_ms": 1e3 * float(np.percentile(secs[(impl, cond)], 80)), "note": ""}
            if cond == "matmul_callback":
                steps = epochs * math.ceil(len(x) / batch)
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


def markdown(header, lines):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few repeats and short fits: a smoke test (< 2 min)")
    ap.add_argument("--models", default=",".join(ZOO), help=f"comma-separated subset of {','.join(ZOO)}")
    ap.add_argument("--no-numpy", action="store_true", help="skip the (slow) NumPy-twin runs")
    ap.add_argument("--no-busy", action="store_true", help="skip the busy-machine section")
    ap.add_argument("--repeats", type=int, help="interleaved rounds per model (default 10, --quick 3)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "local",
                    help="folder for zoo.csv (appended) and zoo.md (overwritten); default benchmarks/results/local")
    args = ap.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in ZOO]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(ZOO)}")
    rounds = args.repeats or (3 if args.quick else 10)
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

    probes = gemm_probes(torch, 2 if args.quick else 5)
    peak_name = max(probes, key=probes.get)
    peak = probes[peak_name]
    print("GEMM probes (2048^3 float32), GFLOP/s: " + ", ".join(f"{k} {v:.1f}" for k, v in probes.items())
          + f"; yardstick = {peak_name}", flush=True)

    csv_rows = []

    def add(section, model, batch, impl, phase, times=None, **extra):
        row = {"date": date, "machine": mach, "section": section, "model": model, "batch": batch, "impl": impl,
               "phase": phase}
        if times is not None:
            row.update(median_ms=round(1e3 * times[0], 4), p20_ms=round(1e3 * times[1], 4),
                       p80_ms=round(1e3 * times[2], 4))
        row.update({k: (round(v, 4) if isinstance(v, float) else v) for k, v in extra.items()})
        csv_rows.append(row)

    for k, v in probes.items():
        add("gemm_probe", "", "", k, "", gflop_per_s=v,
            note="2048x2048x2048 float32" + ("; the yardstick" if k == peak_name else ""))

    header = ["model", "batch", "train ft", "train torch", "ft/torch", "ft/twin", "infer ft", "infer torch", "ft/torch",
              "ft/twin", "GFLOP/s ft", "GFLOP/s torch", "%peak ft", "%peak torch"]
    lines = []
    for name in models:
        contenders, macs = build(name, impls, torch)
        batch = ZOO[name][1][0]
        jobs = {}
        for impl, c in contenders.items():
            jobs[(impl, "train")] = c.step
            jobs[(impl, "infer")] = c.infer
        t = interleaved(jobs, rounds, sparse={("twin", "train"), ("twin", "infer")}, sparse_samples=twin_samples)
        del contenders, jobs
        sps = {k: batch / v[0] for k, v in t.items()}
        gflop = {"train": 6 * macs / 1e9, "infer": 2 * macs / 1e9}
        for (impl, phase), times in t.items():
            g = gflop[phase] / times[0]
            vs_t = sps[(impl, phase)] / sps[("torch", phase)] if impl != "torch" else None
            vs_n = sps[(impl, phase)] / sps[("twin", phase)] if ("twin", phase) in sps and impl != "twin" else None
            add("zoo", name, batch, IMPLS[impl], phase, times, samples_per_s=sps[(impl, phase)], gflop=gflop[phase],
                gflop_per_s=g, pct_of_gemm_peak=100 * g / peak, vs_torch=vs_t, vs_numpy_twin=vs_n)

        def ratio(a, b):
            return fmt(sps[a] / sps[b], 2) if a in sps and b in sps else "-"
        g_ft, g_t = gflop["train"] / t[("fused", "train")][0], gflop["train"] / t[("torch", "train")][0]
        lines.append([name, str(batch),
                      fmt(sps[("fused", "train")]), fmt(sps[("torch", "train")]),
                      ratio(("fused", "train"), ("torch", "train")), ratio(("fused", "train"), ("twin", "train")),
                      fmt(sps[("fused", "infer")]), fmt(sps[("torch", "infer")]),
                      ratio(("fused", "infer"), ("torch", "infer")), ratio(("fused", "infer"), ("twin", "infer")),
                      fmt(g_ft, 1), fmt(g_t, 1), fmt(100 * g_ft / peak, 1), fmt(100 * g_t / peak, 1)])
        print(f"timed {name:11s} train {fmt(sps[('fused', 'train')])} vs torch {fmt(sps[('torch', 'train')])} "
              f"samples/s", flush=True)

    print()
    print_table(header, lines)
    print(f"(samples/s; ft = fusetrain; twin = fusetrain on its NumPy twins; GFLOP/s from 6 x MACs per sample of "
          f"conv and linear layers; peak = {peak_name} {peak:.1f} GFLOP/s)")

    busy_lines, busy_note = [], ""
    if not args.no_busy:
        rows, mm_s, n = busy_section(torch, 1 if args.quick else 3, 3 if args.quick else 10)
        busy_note = (f"digits MLP 64-256-256-10, Trainer.fit (torch: a plain loop) of {n} samples, batch 32, SGD; "
                     f"the 256x256 matmul alone takes {1e3 * mm_s:.3f} ms")
        labels = {"idle": "(a) as is", "busy": "(b) + 1 busy process", "noop_callback": "(a') no-op callback",
                  "matmul_callback": "(c) matmul callback"}
        ref = {"idle": "-", "busy": "of (a)", "noop_callback": "-", "matmul_callback": "of (a')"}
        for r in rows:
            add("busy", "mlp_digits", 32, r["impl"], r["phase"], (r["median_ms"] / 1e3, r["p20_ms"] / 1e3,
                r["p80_ms"] / 1e3), samples_per_s=r["samples_per_s"], fraction=r["fraction"], note=r["note"])
            busy_lines.append([r["impl"], labels[r["phase"]], fmt(r["samples_per_s"]),
                               "-" if ref[r["phase"]] == "-" else f"{r['fraction']:.2f} {ref[r['phase']]}", r["note"]])
        print("\nBusy machine: " + busy_note)
        print_table(["impl", "condition", "samples/s", "fraction", "note"], busy_lines)

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "zoo.csv"
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        if new:
            w.writeheader()
        w.writerows(csv_rows)
    cmd = "python benchmarks/bench_zoo.py " + " ".join(sys.argv[1:])
    md = [f"## Model zoo: training and inference throughput\n",
          f"{date}; {setup}; load average at start {load[0]:.2f}. Command: `{cmd.strip()}`.\n",
          markdown(header, lines),
          f"\nsamples/s (median of {rounds} interleaved rounds); ft = fusetrain, twin = fusetrain on its NumPy twins; "
          f"GFLOP/s counts 6 x the conv and linear multiply-adds per training sample; % peak is of the fastest "
          "2048^3 float32 GEMM measured: " + ", ".join(f"{k} {v:.1f}" for k, v in probes.items()) + " GFLOP/s.\n"]
    if busy_lines:
        md += ["### Busy machine\n", busy_note + ".\n",
               markdown(["impl", "condition", "samples/s", "fraction", "note"], busy_lines), ""]
    (args.out / "zoo.md").write_text("\n".join(md) + "\n")
    print(f"\nwrote {path} and {args.out / 'zoo.md'}")


if __name__ == "__main__":
    main()
