"""The ``fusetrain`` command: ``train`` (a classifier with every training trick as a flag; progress
bar, test accuracy, history CSV, curves PNG, checkpoint) and ``bench`` (the benchmark scripts)."""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw", "normalized")
SCHEDULES = ("exponential", "step", "cosine", "plateau", "none")
DEFAULT_LR = {"sgd": 0.05, "momentum": 0.05, "adagrad": 0.05, "rmsprop": 1e-3, "adam": 3e-3, "adamw": 3e-3,
              "normalized": 0.05}
# Flags that describe the run itself; on --resume everything else comes from the checkpoint.
_RUN_FLAGS = ("epochs", "out", "quiet", "resume", "device", "backend")


def _build_mlp(args, in_shape, num_classes):
    from .models import MLP
    return MLP(int(_prod(in_shape)), args.hidden, num_classes, batchnorm=args.batchnorm, dropout=args.dropout,
               activation=args.activation, init=args.init)


# name -> (builder(args, input_shape_without_batch, num_classes) -> Module, wants flat inputs).
# Other model families register here (e.g. CNNs taking (N, C, L) or (N, C, H, W) inputs).
MODELS = {"mlp": (_build_mlp, True)}


def register_model(name, build, flat_inputs):
    """Make ``--model name`` available: ``build(args, input_shape, num_classes)`` returns the
    model; ``flat_inputs`` says whether it wants (N, features) or image-shaped inputs."""
    MODELS[name] = (build, bool(flat_inputs))


def _prod(shape):
    n = 1
    for s in shape:
        n *= int(s)
    return n


# ---------------------------------------------------------------------------- argument types
def _int_list(text):
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints such as 256,256, got {text!r}")
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints such as 256,256, got {text!r}")
    return vals


def _bounded(lo, hi=None, lo_open=False, hi_open=False, kind=float):
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a{'n integer' if kind is int else ' number'}, got {text!r}")
        bad = v < lo or (lo_open and v == lo) or (hi is not None and (v > hi or (hi_open and v == hi)))
        if bad:
            lb, rb = "(" if lo_open else "[", ")" if hi_open else "]"
            raise argparse.ArgumentTypeError(f"expected a value in {lb}{lo}, {'inf' if hi is None else hi}{rb}, got {v}")
        return v
    return parse


def _patience(text):
    if text.lower() in ("off", "none", "no"):
        return None
    return _bounded(0, kind=int)(text)


def build_parser():
    p = argparse.ArgumentParser(prog="fusetrain", description="Fast neural-network training on fused kernels.")
    sub = p.add_subparsers(dest="command", metavar="{train,bench}")
    sub.required = True
    t = sub.add_parser("train", help="train a classifier with every trick as a flag",
                       description="Train a classifier. With no flags: a digits MLP with batchnorm, dropout, AdamW, "
                                   "gradient clipping 1.0, exponential LR decay 0.98 and early stopping.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = t.add_argument_group("data")
    d.add_argument("--dataset", choices=("digits", "mnist1d", "idx"), default="digits",
                   help="scikit-learn's 8x8 digits, procedural MNIST-1D (pip install mnist1d), or your IDX files")
    d.add_argument("--train-images", help="IDX images for --dataset idx (e.g. train-images-idx3-ubyte.gz)")
    d.add_argument("--train-labels", help="IDX labels for --dataset idx")
    d.add_argument("--test-images", help="IDX test images for --dataset idx (default: split off the training set)")
    d.add_argument("--test-labels", help="IDX test labels for --dataset idx")
    d.add_argument("--val-split", type=_bounded(0, 1, hi_open=True), default=0.1,
                   help="fraction of the training set held out for validation (early stopping, plateau)")
    m = t.add_argument_group("model")
    m.add_argument("--model", choices=sorted(MODELS), default="mlp")
    m.add_argument("--hidden", type=_int_list, default=(256, 256), help="hidden widths, comma-separated")
    m.add_argument("--init", default="he_normal", help="weight init: he_normal, he_uniform, glorot_uniform, "
                   "glorot_normal, lecun_normal, gaussian, ...")
    m.add_argument("--batchnorm", action=argparse.BooleanOptionalAction, default=True, help="batch normalization")
    m.add_argument("--dropout", type=_bounded(0, 1, hi_open=True), default=0.2, help="dropout probability")
    m.add_argument("--activation", choices=("relu", "leaky_relu", "tanh", "sigmoid"), default="relu")
    o = t.add_argument_group("optimization")
    o.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw")
    o.add_argument("--lr", type=_bounded(0, lo_open=True), default=None,
                   help="learning rate (default per optimizer: " + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + ")")
    o.add_argument("--momentum", type=_bounded(0, 1, hi_open=True), default=0.9, help="for momentum/normalized/rmsprop")
    o.add_argument("--weight-decay", type=_bounded(0), default=None,
                   help="weight decay (default 1e-2 for adamw, else 0)")
    o.add_argument("--clip-norm", type=_bounded(0), default=1.0, help="clip by global gradient norm (0: off)")
    o.add_argument("--schedule", choices=SCHEDULES, default="exponential", help="per-epoch LR schedule")
    o.add_argument("--lr-decay", type=_bounded(0, 1, lo_open=True), default=0.98,
                   help="gamma of the exponential/step schedule, factor of the plateau schedule")
    o.add_argument("--step-size", type=_bounded(1, kind=int), default=10, help="epochs per step of --schedule step")
    o.add_argument("--warmup-epochs", type=_bounded(0, kind=int), default=0, help="linear LR warm-up epochs")
    o.add_argument("--early-stopping", type=_patience, default=8, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without val_loss improvement, restoring the best weights "
                        "('off' to disable)")
    o.add_argument("--ema", type=_bounded(0, 1, lo_open=True, hi_open=True), default=None, metavar="DECAY",
                   help="average the weights with an EMA of this decay (e.g. 0.999)")
    o.add_argument("--swa-start", type=_bounded(0, kind=int), default=None, metavar="EPOCH",
                   help="stochastic weight averaging from this (0-based) epoch on")
    o.add_argument("--swa-lr", type=_bounded(0, lo_open=True), default=None, help="constant LR during SWA")
    r = t.add_argument_group("run")
    r.add_argument("--epochs", type=_bounded(1, kind=int), default=40)
    r.add_argument("--batch-size", type=_bounded(1, kind=int), default=64)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    r.add_argument("--backend", choices=("fused", "numpy"), default="fused",
                   help="fused kernels, or the NumPy twins (to compare)")
    r.add_argument("--out", default=None, help="output folder (default runs/<dataset>-<model>-<time>)")
    r.add_argument("--resume", metavar="CKPT", default=None,
                   help="continue the run saved in CKPT (its settings are reused; --epochs is the new total)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    b = sub.add_parser("bench", help="run the benchmarks (needs a source checkout)",
                       description="Run benchmarks/ scripts: all of them (run_all.py), or the named ones, "
                                   "e.g. 'fusetrain bench train optim'. Arguments after '--' go to the scripts.")
    b.add_argument("names", nargs="*", help="benchmark names (bench_<name>.py); none: all")
    b.add_argument("--quick", action="store_true", help="fewer repeats (run_all only)")
    return p


# ---------------------------------------------------------------------------- train
def _load_data(args):
    from . import data
    if args.dataset == "digits":
        train, test = data.load_digits(seed=args.seed)
    elif args.dataset == "mnist1d":
        train, test = data.load_mnist1d(seed=42)
    else:
        if not args.train_images or not args.train_labels:
            raise SystemExit("fusetrain train: --dataset idx needs --train-images and --train-labels")
        x, y = data.load_idx_dataset(args.train_images, args.train_labels)
        if args.test_images or args.test_labels:
            if not (args.test_images and args.test_labels):
                raise SystemExit("fusetrain train: pass both --test-images and --test-labels (or neither)")
            train, test = (x, y), data.load_idx_dataset(args.test_images, args.test_labels)
        else:
            train, test = data.train_test_split(x, y, test_size=0.2, seed=args.seed)
    (x, y), (xt, yt) = train, test
    val = None
    if args.val_split > 0:
        (x, y), val = data.train_test_split(x, y, test_size=args.val_split, seed=args.seed + 1)
    return (x, y), val, (xt, yt)


def _build_optimizer(args, model):
    from . import optim
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    wd = args.weight_decay if args.weight_decay is not None else (1e-2 if args.optimizer == "adamw" else 0.0)
    params = model.parameters()
    name = args.optimizer
    if name == "sgd":
        return optim.SGD(params, lr=lr, weight_decay=wd)
    if name == "momentum":
        return optim.SGD(params, lr=lr, momentum=args.momentum, nesterov=True, weight_decay=wd)
    if name == "normalized":
        return optim.NormalizedSGD(params, lr=lr, momentum=args.momentum, weight_decay=wd)
    if name == "adagrad":
        return optim.Adagrad(params, lr=lr, weight_decay=wd)
    if name == "rmsprop":
        return optim.RMSprop(params, lr=lr, weight_decay=wd)
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=wd)
    return optim.AdamW(params, lr=lr, weight_decay=wd)


def _build_scheduler(args, opt):
    from .optim import lr_scheduler as ls
    warm = args.warmup_epochs
    if args.schedule == "plateau":
        return ls.ReduceLROnPlateau(opt, factor=args.lr_decay if args.lr_decay < 1 else 0.5, patience=3,
                                    warmup_epochs=warm)
    if args.schedule == "none":
        main = None
    elif args.schedule == "exponential":
        main = ls.ExponentialLR(opt, args.lr_decay)
    elif args.schedule == "step":
        main = ls.StepLR(opt, args.step_size, args.lr_decay)
    else:
        main = ls.CosineAnnealingLR(opt, max(1, args.epochs - warm))
    if not warm:
        return main
    warmup = ls.LinearLR(opt, start_factor=0.1, total_iters=warm)
    if main is None:
        return warmup
    return ls.SequentialLR(opt, [warmup, main], milestones=[warm])


def _train(args, parser):
    from . import backend, callbacks as cb
    from . import random as frandom
    from .train import Trainer
    from .train import checkpoint as ckpt

    if args.resume:
        try:
            saved = ckpt.read(args.resume)
        except (OSError, ValueError) as exc:
            parser.error(f"--resume: {exc}")
        cfg = (saved.get("extra") or {}).get("cli_args")
        if not cfg:
            parser.error(f"--resume: {args.resume} was not written by 'fusetrain train' (no saved settings)")
        for k, v in cfg.items():
            if k not in _RUN_FLAGS:
                setattr(args, k, tuple(v) if k == "hidden" else v)
    if args.model not in MODELS:
        parser.error(f"--model: unknown model {args.model!r}; available: {', '.join(sorted(MODELS))}")
    if args.swa_lr is not None and args.swa_start is None:
        parser.error("--swa-lr needs --swa-start")
    backend.set_backend(args.backend)
    (x, y), val, (xt, yt) = _load_data(args)
    build, flat = MODELS[args.model]
    if flat:
        x, xt = x.reshape(len(x), -1), xt.reshape(len(xt), -1)
        val = None if val is None else (val[0].reshape(len(val[0]), -1), val[1])
    num_classes = int(max(y.max(), yt.max())) + 1
    frandom.manual_seed(args.seed)
    model = build(args, x.shape[1:], num_classes)
    opt = _build_optimizer(args, model)
    sched = _build_scheduler(args, opt)
    out = Path(args.out or os.path.join("runs", f"{args.dataset}-{args.model}-"
                                        f"{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"))
    out.mkdir(parents=True, exist_ok=True)
    monitor = "val_loss" if val is not None else "loss"
    cbs = [cb.ModelCheckpoint(out / "checkpoint.npz")]
    if args.early_stopping is not None:
        cbs.insert(0, cb.EarlyStopping(monitor=monitor, patience=args.early_stopping, restore_best_weights=True))
    if args.ema is not None:
        cbs.append(cb.EMA(args.ema))
    if args.swa_start is not None:
        cbs.append(cb.SWA(args.swa_start, swa_lr=args.swa_lr))
    trainer = Trainer(model, opt, max_grad_norm=args.clip_norm or None, scheduler=sched, callbacks=cbs,
                      device=args.device, scheduler_monitor=monitor)
    trainer.metadata["cli_args"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()
                                    if k != "command"}
    if args.resume:
        trainer.load_checkpoint(args.resume)
        if trainer.epoch >= args.epochs and not args.quiet:
            print(f"the checkpoint already holds {trainer.epoch} epochs (--epochs {args.epochs}): nothing to train")
    with open(out / "config.json", "w") as f:
        json.dump(trainer.metadata["cli_args"], f, indent=2, sort_keys=True)
    if not args.quiet:
        n_params = sum(p.size for p in model.parameters())
        print(f"{args.dataset}: {len(x)} train, {0 if val is None else len(val[0])} validation, {len(xt)} test "
              f"samples; {args.model} with {n_params:,} parameters; {args.optimizer}, backend {args.backend}")
    t0 = time.perf_counter()
    history = trainer.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, validation_data=val,
                          seed=args.seed, verbose=0 if args.quiet else 1)
    elapsed = time.perf_counter() - t0
    res = trainer.evaluate(xt, yt)
    history.to_csv(out / "history.csv")
    ckpt.save_checkpoint(out / "model.npz", model, epoch=trainer.epoch)
    plot_note = ""
    try:
        history.plot(out / "curves.png", title=f"{args.dataset} {args.model} ({args.optimizer})")
    except ImportError:
        plot_note = " (curves.png skipped: matplotlib is not installed, pip install matplotlib)"
    except ValueError:
        plot_note = " (curves.png skipped: no epoch was trained)"
    print(f"test accuracy {100 * res.get('accuracy', float('nan')):.2f}% (loss {res['loss']:.4f}) after "
          f"{len(history.epoch)} epochs in {elapsed:.1f}s; wrote {out}/history.csv, curves.png, checkpoint.npz, "
          f"model.npz{plot_note}")
    return 0


# ---------------------------------------------------------------------------- bench
def _bench_dir():
    here = Path(__file__).resolve()
    for cand in (here.parents[2] / "benchmarks", Path.cwd() / "benchmarks"):
        if (cand / "common.py").exists():
            return cand
    return None


def _bench(args, extra):
    folder = _bench_dir()
    if folder is None:
        print("fusetrain bench: no benchmarks/ folder found. The benchmarks ship with the source checkout, not "
              "the installed package: clone the repository, install it with pip install -e ., and run "
              "'fusetrain bench' from there.", file=sys.stderr)
        return 2
    if not args.names:
        cmd = [sys.executable, str(folder / "run_all.py")] + (["--quick"] if args.quick else [])
        return subprocess.call(cmd, cwd=folder)
    available = sorted(p.stem[len("bench_"):] for p in folder.glob("bench_*.py"))
    unknown = [n for n in args.names if n not in available]
    if unknown:
        print(f"fusetrain bench: unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available)}",
              file=sys.stderr)
        return 2
    status = 0
    for name in args.names:
        print(f"=== bench_{name}.py ===", flush=True)
        status = subprocess.call([sys.executable, str(folder / f"bench_{name}.py")] + extra, cwd=folder) or status
    return status


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "bench":
        return _bench(args, extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return _train(args, parser)


if __name__ == "__main__":
    sys.exit(main())
