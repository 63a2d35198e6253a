"""GPU benchmarks of the CUDA kernels (CuPy arrays): fused AdamW over ~18.9 M params vs a
device-to-device copy measured in the same run (GB/s, % of copy) and vs torch.optim.AdamW(fused=True)
on CUDA; dropout and batchnorm vs PyTorch CUDA. Appends to benchmarks/results/cuda.csv.
Timed with CUDA events on the current stream (median, 20th and 80th percentiles). Before any
timing, each kernel's results on CuPy arrays are validated against the same op on host arrays
(the C++ kernels, which the CPU tests hold to the NumPy twins).

    python benchmarks/bench_cuda.py [--repeats N]
"""
from __future__ import annotations

import sys

import numpy as np

import fusetrain
from common import Table, compare, parse_args
from fusetrain import ops

SIZES = [1024 * 1419] * 13 + [1419] * 13  # 18.91 M params in 26 tensors, as bench_optim.py
ADAM_BYTES = 28  # reads p, g, m, v; writes p, m, v (float32)


def gpu_timeit(cp, fn, repeats, warmup=3):
    """(median, p20, p80) in ms of fn() measured with CUDA events on the current stream."""
    for _ in range(warmup):
        fn()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    samples = []
    for _ in range(repeats):
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(cp.cuda.get_elapsed_time(start, end))
    s = np.array(samples)
    return float(np.median(s)), float(np.percentile(s, 20)), float(np.percentile(s, 80))


def torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def check_gpu(cp, name, fn, arrays, *, rtol, atol):
    """fn(arrays) -> {label: array} run on CuPy copies of `arrays` and on host copies; exits with
    status 1 unless the results match."""
    gpu = {k: cp.asnumpy(v) for k, v in fn({k: cp.asarray(a) for k, a in arrays.items()}).items()}
    compare(name, gpu, fn({k: a.copy() for k, a in arrays.items()}), "CPU kernel", rtol=rtol, atol=atol)


def adamw_step(a):
    ops.adam_step(a["param"], a["grad"], a["m"], a["v"], lr=1e-3, weight_decay=1e-2, decoupled=True, step=10)
    return {k: a[k] for k in ("param", "m", "v")}


def dropout_step(a):
    return {"y": ops.dropout_forward(a["x"], 0.1, 7, 0), "grad_input": ops.dropout_backward(a["x"], 0.1, 7, 0)}


def batchnorm_step(a):
    y, mean, invstd = ops.batchnorm_forward(a["x"], a["weight"], a["bias"], a["running_mean"], a["running_var"],
                                            training=True, relu=True)
    dx = ops.batchnorm_backward(a["dy"], a["x"], y, a["weight"], mean, invstd, training=True, relu=True,
                                grad_weight=a["grad_weight"], grad_bias=a["grad_bias"])
    return {"y": y, "mean": mean, "invstd": invstd, "running_mean": a["running_mean"],
            "running_var": a["running_var"], "grad_input": dx, "grad_weight": a["grad_weight"],
            "grad_bias": a["grad_bias"]}


def validate(cp):
    rng = np.random.default_rng(3)
    n, shape = 1 << 20, (32, 64, 16, 16)
    C = shape[1]

    def f32(*s, positive=False):
        a = rng.standard_normal(s).astype(np.float32)
        return np.abs(a) if positive else a

    check_gpu(cp, "cuda adamw", adamw_step, {"param": f32(n), "grad": f32(n), "m": f32(n), "v": f32(n, positive=True)},
              rtol=1e-5, atol=1e-6)
    check_gpu(cp, "cuda dropout", dropout_step, {"x": f32(n)}, rtol=1e-6, atol=0)
    check_gpu(cp, "cuda batchnorm+relu", batchnorm_step,
              {"x": f32(*shape), "dy": f32(*shape), "weight": f32(C), "bias": f32(C), "running_mean": f32(C),
               "running_var": f32(C, positive=True), "grad_weight": f32(C), "grad_bias": f32(C)},
              rtol=1e-4, atol=1e-4)


def bench_adamw(cp, torch, table, R):
    n = sum(SIZES)
    shape = f"{n / 1e6:.2f}M params"
    rng = np.random.default_rng(0)
    p = cp.asarray(rng.standard_normal(n).astype(np.float32))
    g = cp.asarray((rng.standard_normal(n) * 0.01).astype(np.float32))
    m, v = cp.zeros(n, cp.float32), cp.zeros(n, cp.float32)
    src, dst = cp.ones(n, cp.float32), cp.empty(n, cp.float32)
    stream = cp.cuda.get_current_stream()

    def copy():
        cp.cuda.runtime.memcpyAsync(dst.data.ptr, src.data.ptr, 4 * n, cp.cuda.runtime.memcpyDeviceToDevice,
                                    stream.ptr)

    copy_t = gpu_timeit(cp, copy, R)
    copy_gbps = 8 * n / copy_t[0] / 1e6
    table.probe = copy_gbps
    table.add("device-to-device copy", shape, copy_t, nbytes=8 * n)["bench"] = "cuda adamw"
    torch_ms = None
    if torch is not None:
        tps = [torch.zeros(s, device="cuda") for s in SIZES]
        for t in tps:
            t.grad = torch.randn(t.shape, device="cuda") * 0.01
        opt = torch.optim.AdamW(tps, lr=1e-3, weight_decay=1e-2, fused=True)
        tt = gpu_timeit(cp, opt.step, R)  # torch runs on its own current stream; events bracket it
        torch_ms = tt[0]
        table.add("torch AdamW(fused=True)", shape, tt, nbytes=ADAM_BYTES * n)["bench"] = "cuda adamw"
        del tps, opt
    step = [10]

    def adamw():
        ops.adam_step(p, g, m, v, lr=1e-3, weight_decay=1e-2, decoupled=True, step=step[0])

    ft = gpu_timeit(cp, adamw, R)
    row = table.add("fusetrain cuda", shape, ft, nbytes=ADAM_BYTES * n, torch_ms=torch_ms)
    row["bench"] = "cuda adamw"
    print(f"AdamW: {row['gb_per_s']} GB/s = {row['pct_of_probe']}% of the copy's {copy_gbps:.0f} GB/s "
          f"(target >= 80%)" + (f"; {row['speedup_vs_torch']}x torch fused (target >= 1)" if torch_ms else ""))


def bench_dropout(cp, torch, table, R):
    n = 1 << 25
    shape = f"{n / 1e6:.1f}M"
    x = cp.asarray(np.random.default_rng(1).standard_normal(n).astype(np.float32))
    out = cp.empty_like(x)
    table.probe = None
    fwd = gpu_timeit(cp, lambda: ops.dropout_forward(x, 0.1, 7, 0, out=out), R)
    bwd = gpu_timeit(cp, lambda: ops.dropout_backward(x, 0.1, 7, 0, grad_input=out), R)
    t_fwd = t_bwd = None
    if torch is not None:
        tx = torch.as_tensor(x, device="cuda")
        t_fwd = gpu_timeit(cp, lambda: torch.nn.functional.dropout(tx, 0.1, training=True), R)
        _, mask = torch.ops.aten.native_dropout(tx, 0.1, True)
        t_bwd = gpu_timeit(cp, lambda: torch.ops.aten.native_dropout_backward(tx, mask, 1 / 0.9), R)
        table.add("torch", shape, t_fwd, nbytes=9 * n)["bench"] = "cuda dropout fwd"
        table.add("torch", shape, t_bwd, nbytes=9 * n)["bench"] = "cuda dropout bwd"
    # fusetrain reads x and writes y (8 B/elem); torch also writes a 1-byte mask (9 B/elem).
    table.add("fusetrain cuda", shape, fwd, nbytes=8 * n, torch_ms=t_fwd and t_fwd[0])["bench"] = "cuda dropout fwd"
    table.add("fusetrain cuda", shape, bwd, nbytes=8 * n, torch_ms=t_bwd and t_bwd[0])["bench"] = "cuda dropout bwd"


def bench_batchnorm(cp, torch, table, R):
    shape = (128, 64, 32, 32)
    C = shape[1]
    rng = np.random.default_rng(2)
    x = cp.asarray(rng.standard_normal(shape).astype(np.float32))
    dy = cp.asarray(rng.standard_normal(shape).astype(np.float32))
    w, b = cp.ones(C, cp.float32), cp.zeros(C, cp.float32)
    rm, rv = cp.zeros(C, cp.float32), cp.ones(C, cp.float32)
    dw, db = cp.zeros(C, cp.float32), cp.zeros(C, cp.float32)
    y, mean, invstd = ops.batchnorm_forward(x, w, b, rm, rv, training=True)
    dx = cp.empty_like(x)
    label = "x".join(map(str, shape))
    table.probe = None
    cases = {
        "cuda bn fwd": lambda: ops.batchnorm_forward(x, w, b, rm, rv, training=True, out=y),
        "cuda bn+relu fwd": lambda: ops.batchnorm_forward(x, w, b, rm, rv, training=True, relu=True, out=y),
        "cuda bn bwd": lambda: ops.batchnorm_backward(dy, x, None, w, mean, invstd, training=True,
                                                       grad_input=dx, grad_weight=dw, grad_bias=db),
    }
    nbytes = {"cuda bn fwd": 12 * x.size, "cuda bn+relu fwd": 12 * x.size, "cuda bn bwd": 20 * x.size}
    torch_cases = {}
    if torch is not None:
        F = torch.nn.functional
        tx = torch.as_tensor(x, device="cuda").requires_grad_(True)
        tw = torch.ones(C, device="cuda", requires_grad=True)
        tb = torch.zeros(C, device="cuda", requires_grad=True)
        trm, trv = torch.zeros(C, device="cuda"), torch.ones(C, device="cuda")
        tdy = torch.as_tensor(dy, device="cuda")
        ty = F.batch_norm(tx, trm, trv, tw, tb, training=True)
        torch_cases = {
            "cuda bn fwd": lambda: F.batch_norm(tx.detach(), trm, trv, tw.detach(), tb.detach(), training=True),
            "cuda bn+relu fwd": lambda: torch.relu_(F.batch_norm(tx.detach(), trm, trv, tw.detach(), tb.detach(),
                                                                 training=True)),
            "cuda bn bwd": lambda: torch.autograd.grad(ty, (tx, tw, tb), tdy, retain_graph=True),
        }
    for name, fn in cases.items():
        tt = None
        if name in torch_cases:
            tt = gpu_timeit(cp, torch_cases[name], R)
            table.add("torch", label, tt, nbytes=nbytes[name])["bench"] = name
        ft = gpu_timeit(cp, fn, R)
        table.add("fusetrain cuda", label, ft, nbytes=nbytes[name], torch_ms=tt and tt[0])["bench"] = name


def main():
    args = parse_args(__doc__, repeats=30)
    if not fusetrain.cuda_available():
        sys.exit("bench_cuda.py needs an NVIDIA GPU, CuPy and fusetrain built with its CUDA module "
                 "(fusetrain.cuda_available() is False here); nothing was measured.")
    import cupy as cp

    validate(cp)
    torch = torch_cuda()
    if torch is None:
        print("PyTorch with CUDA is not available: reporting fusetrain and the copy only")
    table = Table("cuda", "cuda")
    table.machine = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["name"].decode()
    print("device:", table.machine)
    bench_adamw(cp, torch, table, args.repeats)
    bench_dropout(cp, torch, table, args.repeats)
    bench_batchnorm(cp, torch, table, args.repeats)
    table.print()
    print("saved", table.save())


if __name__ == "__main__":
    main()
