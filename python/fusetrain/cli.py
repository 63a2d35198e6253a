"""The ``fusetrain`` command: ``train`` (an MLP or CNN classifier with every training trick as a flag,
named presets; progress bar, test accuracy, history CSV, curves PNG, checkpoint) and ``bench``
(the benchmark scripts)."""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw", "normalized")
SCHEDULES = ("exponential", "step", "cosine", "plateau", "none")
DEFAULT_LR = {"sgd": 0.05, "momentum": 0.05, "adagrad": 0.05, "rmsprop": 1e-3, "adam": 3e-3, "adamw": 3e-3,
              "normalized": 0.05}
# Flags that describe the run itself; on --resume everything else comes from the checkpoint.
_RUN_FLAGS = ("epochs", "out", "quiet", "resume", "device", "backend")
# Flags that only some models take; each model lists the ones it uses (see register_model).
_MODEL_FLAGS = ("hidden", "widths", "activation", "init", "batchnorm", "dropout")
_WIDTHS = {"cnn1d": 3, "resnet": 2}  # how many --widths each model takes

# name -> (description, settings). Explicit flags override a preset's settings; the preset's lr and
# weight decay belong to its optimizer, so an explicit --optimizer of another kind drops them too.
PRESETS = {
    "mnist1d-cnn": ("the recipe of examples/mnist1d_cnn.py (99.4% test accuracy there, see "
                    "benchmarks/results/mnist1d_ablation.md): all 4000 training signals, no early stopping",
                    dict(dataset="mnist1d", model="cnn1d", batchnorm=True, dropout=0.2, optimizer="adamw", lr=3e-3,
                         weight_decay=1e-2, clip_norm=1.0, schedule="exponential", lr_decay=0.95, epochs=30,
                         batch_size=128, val_split=0.0, early_stopping=None)),
}
_OPTIMIZER_BOUND = ("lr", "weight_decay")


class UsageError(ValueError):
    """A model builder's complaint about the flags or the data; reported as an argparse error."""


def _check_input(args, in_shape, ndim, min_size, what, hint):
    """Refuse samples of shape ``in_shape`` unless they have ``ndim`` axes, the spatial ones >= min_size."""
    shape = tuple(int(s) for s in in_shape)
    if len(shape) != ndim or any(s < min_size for s in shape[1:]):
        raise UsageError(f"--model {args.model} needs {what}, but --dataset {args.dataset} gives samples of shape "
                         f"{shape}; {hint}")


def _build_mlp(args, in_shape, num_classes):
    from .models import MLP
    return MLP(int(_prod(in_shape)), args.hidden, num_classes, batchnorm=args.batchnorm, dropout=args.dropout,
               activation=args.activation, init=args.init)


def _widths(args, keyword):
    return {} if args.widths is None else {keyword: tuple(args.widths)}


def _build_cnn1d(args, in_shape, num_classes):
    from .models import CNN1d
    # two 2x max-pools: a length below 4 would pool down to nothing
    _check_input(args, in_shape, 2, 4, "1-D signals (N, channels, length >= 4) such as --dataset mnist1d",
                 "use --model resnet, inception or mlp for images")
    return CNN1d(in_shape[0], num_classes, batchnorm=args.batchnorm, dropout=args.dropout,
                 **_widths(args, "channels"))


def _build_resnet(args, in_shape, num_classes):
    from .models import SmallResNet
    _check_input(args, in_shape, 3, 2, "images (N, channels, height >= 2, width >= 2) such as --dataset digits",
                 "use --model cnn1d or mlp for 1-D signals")
    return SmallResNet(in_shape[0], num_classes, dropout=args.dropout, **_widths(args, "widths"))


def _build_inception(args, in_shape, num_classes):
    from .models import SmallInception
    _check_input(args, in_shape, 3, 2, "images (N, channels, height >= 2, width >= 2) such as --dataset "
                 "digits", "use --model cnn1d or mlp for 1-D signals")
    return SmallInception(in_shape[0], num_classes, dropout=args.dropout)


# name -> (builder(args, input_shape_without_batch, num_classes) -> Module, wants flat inputs, model flags
# it takes or None for all).
MODELS = {}


def register_model(name, build, flat_inputs, flags=None):
    """Make ``--model name`` available: ``build(args, input_shape, num_classes)`` returns the
    model (raising UsageError when the data does not fit it); ``flat_inputs`` says whether it
    wants (N, features) or shaped inputs ((N, C, L) signals, (N, C, H, W) images). ``flags``:
    the model-specific flags (names in _MODEL_FLAGS) it uses; giving another one is an error."""
    unknown = sorted(set(flags or ()) - set(_MODEL_FLAGS))
    if unknown:
        raise ValueError(f"register_model: unknown model flags {unknown}; expected names from {_MODEL_FLAGS}")
    MODELS[name] = (build, bool(flat_inputs), None if flags is None else tuple(flags))


register_model("mlp", _build_mlp, True, ("hidden", "activation", "init", "batchnorm", "dropout"))
register_model("cnn1d", _build_cnn1d, False, ("widths", "batchnorm", "dropout"))
register_model("resnet", _build_resnet, False, ("widths", "dropout"))
register_model("inception", _build_inception, False, ("dropout",))


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
        bad = not v == v or v < lo or (lo_open and v == lo) or (hi is not None and (v > hi or (hi_open and v == hi)))
        if bad:
            lb, rb = "(" if lo_open else "[", ")" if hi_open or hi is None else "]"
            raise argparse.ArgumentTypeError(f"expected a value in {lb}{lo}, {'inf' if hi is None else hi}{rb}, got {v}")
        return v
    return parse


def _patience(text):
    if text.lower() in ("off", "none", "no"):
        return None
    return _bounded(0, kind=int)(text)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the option help; the description and the preset list keep their line breaks."""


def _presets_epilog():
    lines = ["presets (--preset NAME; explicit flags override these settings):"]
    for name, (about, values) in PRESETS.items():
        lines.append(textwrap.fill(f"{name}: {about}", 100, initial_indent="  ", subsequent_indent="    "))
        flags = []
        for k, v in values.items():
            flag = "--" + k.replace("_", "-")
            if isinstance(v, bool):
                flags.append(flag if v else "--no-" + k.replace("_", "-"))
            else:
                flags.append(f"{flag} {'off' if v is None else v}")
        lines.append(textwrap.fill("= " + " ".join(flags), 100, initial_indent="    ", subsequent_indent="      "))
    return "\n".join(lines)


def build_parser(defaults=True):
    """The ``fusetrain`` argument parser. ``defaults=False`` leaves every ``train`` option that is
    not on the command line out of the namespace (how main() tells explicit flags from defaults)."""
    p = argparse.ArgumentParser(prog="fusetrain", description="Fast neural-network training on fused kernels.")
    sub = p.add_subparsers(dest="command", metavar="{train,bench}")
    sub.required = True
    t = sub.add_parser("train", help="train a classifier with every trick as a flag",
                       description="Train a classifier. With no flags: a digits MLP with batchnorm, dropout, AdamW,\n"
                                   "gradient clipping 1.0, exponential LR decay 0.98 and early stopping.\n"
                                   "--preset NAME starts from a named recipe instead (see the end of this help).",
                       epilog=_presets_epilog(), formatter_class=_HelpFormatter)

    def add(group, *names, **kw):
        if not defaults:
            kw["default"] = argparse.SUPPRESS
        return group.add_argument(*names, **kw)

    add(t, "--preset", choices=sorted(PRESETS), default=None,
        help="start from a named recipe (listed below); flags given explicitly override its settings")
    d = t.add_argument_group("data")
    add(d, "--dataset", choices=("digits", "mnist1d", "idx"), default="digits",
        help="scikit-learn's 8x8 digits (images 1x8x8), procedural MNIST-1D (signals 1x40; pip install mnist1d), "
             "or your IDX files")
    add(d, "--train-images", help="IDX images for --dataset idx (e.g. train-images-idx3-ubyte.gz; an (N, L) file "
        "holds 1-D signals for --model cnn1d)")
    add(d, "--train-labels", help="IDX labels for --dataset idx")
    add(d, "--test-images", help="IDX test images for --dataset idx (default: split off the training set)")
    add(d, "--test-labels", help="IDX test labels for --dataset idx")
    add(d, "--val-split", type=_bounded(0, 1, hi_open=True), default=0.1,
        help="fraction of the training set held out for validation (early stopping, plateau)")
    m = t.add_argument_group("model")
    add(m, "--model", choices=sorted(MODELS), default="mlp",
        help="mlp: any data, flattened; cnn1d: 1-D signals (N, C, L) such as mnist1d; resnet, inception: images "
             "(N, C, H, W) such as digits")
    add(m, "--hidden", type=_int_list, default=(256, 256), help="mlp: hidden widths, comma-separated")
    add(m, "--widths", type=_int_list, default=None,
        help="conv channel widths, comma-separated: 3 for cnn1d (its default 32,64,128), 2 for resnet (32,64)")
    add(m, "--init", default="he_normal", help="mlp: weight init: he_normal, he_uniform, glorot_uniform, "
        "glorot_normal, lecun_normal, gaussian, ...")
    add(m, "--batchnorm", action=argparse.BooleanOptionalAction, default=True,
        help="batch normalization (mlp, cnn1d; resnet and inception always have it)")
    add(m, "--dropout", type=_bounded(0, 1, hi_open=True), default=0.2, help="dropout probability")
    add(m, "--activation", choices=("relu", "leaky_relu", "tanh", "sigmoid"), default="relu", help="mlp")
    o = t.add_argument_group("optimization")
    add(o, "--optimizer", choices=OPTIMIZERS, default="adamw", help="momentum is Nesterov SGD")
    add(o, "--lr", type=_bounded(0, lo_open=True), default=None,
        help="learning rate (default per optimizer: " + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + ")")
    add(o, "--momentum", type=_bounded(0, 1, hi_open=True), default=0.9, help="for momentum/normalized/rmsprop")
    add(o, "--weight-decay", type=_bounded(0), default=None, help="weight decay (default 1e-2 for adamw, else 0)")
    add(o, "--clip-norm", type=_bounded(0), default=1.0, help="clip by global gradient norm (0: off)")
    add(o, "--schedule", choices=SCHEDULES, default="exponential", help="per-epoch LR schedule")
    add(o, "--lr-decay", type=_bounded(0, 1, lo_open=True), default=0.98,
        help="gamma of the exponential/step schedule, factor of the plateau schedule")
    add(o, "--step-size", type=_bounded(1, kind=int), default=10, help="epochs per step of --schedule step")
    add(o, "--warmup-epochs", type=_bounded(0, kind=int), default=0, help="linear LR warm-up epochs")
    add(o, "--early-stopping", type=_patience, default=8, metavar="PATIENCE",
        help="stop after PATIENCE epochs without val_loss improvement, restoring the best weights ('off' to disable)")
    add(o, "--ema", type=_bounded(0, 1, lo_open=True, hi_open=True), default=None, metavar="DECAY",
        help="average the weights with an EMA of this decay (e.g. 0.999)")
    add(o, "--swa-start", type=_bounded(0, kind=int), default=None, metavar="EPOCH",
        help="stochastic weight averaging from this (0-based) epoch on")
    add(o, "--swa-lr", type=_bounded(0, lo_open=True), default=None, help="constant LR during SWA")
    r = t.add_argument_group("run")
    add(r, "--epochs", type=_bounded(1, kind=int), default=40,
        help="number of epochs (with --resume: the new total, by default the checkpoint's)")
    add(r, "--batch-size", type=_bounded(1, kind=int), default=64, help="samples per step")
    add(r, "--seed", type=int, default=0, help="seeds initialization, dropout, shuffling and the digits/IDX splits")
    add(r, "--device", choices=("cpu", "cuda"), default="cpu", help="cuda needs CuPy and the CUDA build")
    add(r, "--backend", choices=("fused", "numpy"), default="fused",
        help="fused kernels, or the NumPy twins (to compare)")
    add(r, "--out", default=None, help="output folder (default runs/<dataset>-<model>-<time>)")
    add(r, "--resume", metavar="CKPT", default=None,
        help="continue the run saved in CKPT (its settings are reused; flags may not change them)")
    add(r, "--quiet", action="store_true", help="no progress bars")
    b = sub.add_parser("bench", help="run the benchmarks (needs a source checkout)",
                       description="Run benchmarks/ scripts: all of them (run_all.py), or the named ones, "
                                   "e.g. 'fusetrain bench train optim'. Arguments after '--' go to the scripts.")
    b.add_argument("names", nargs="*", help="benchmark names (bench_<name>.py); none: all")
    b.add_argument("--quick", action="store_true", help="fewer repeats (run_all only)")
    p.train_parser = t  # errors about train flags print the train usage, as argparse's own do
    return p


def _flag(dest, value=None):
    if value is False and dest == "batchnorm":
        return "--no-batchnorm"
    return "--" + dest.replace("_", "-")


def _same(a, b):
    norm = (lambda v: list(v) if isinstance(v, (tuple, list)) else v)
    return norm(a) == norm(b)


def _resolve(args, explicit, parser):
    """Apply --preset or, with --resume, the checkpoint's settings; then check the flags against
    each other and the model. ``explicit``: the options given on the command line."""
    if args.resume:
        from .train import checkpoint as ckpt
        try:
            saved = ckpt.read(args.resume)
        except (OSError, ValueError) as exc:
            parser.error(f"--resume: {exc}")
        cfg = ((saved.get("extra") or {}).get("metadata") or {}).get("cli_args")
        if not isinstance(cfg, dict) or not cfg:
            parser.error(f"--resume: {args.resume} was not written by 'fusetrain train' (no saved settings)")
        for k in sorted(explicit):
            if k not in _RUN_FLAGS and k in cfg and not _same(getattr(args, k), cfg[k]):
                parser.error(f"{_flag(k, getattr(args, k))}: a resumed run keeps the checkpoint's settings "
                             f"({k} {cfg[k]!r}); drop the flag or start a new run")
        for k, v in cfg.items():
            if k not in _RUN_FLAGS and hasattr(args, k):
                setattr(args, k, tuple(v) if k in ("hidden", "widths") and v is not None else v)
        if "epochs" not in explicit and isinstance(cfg.get("epochs"), int):
            args.epochs = cfg["epochs"]
    elif args.preset is not None:
        values = PRESETS[args.preset][1]
        other_optimizer = "optimizer" in explicit and args.optimizer != values.get("optimizer", args.optimizer)
        for k, v in values.items():
            if k in explicit or (other_optimizer and k in _OPTIMIZER_BOUND):
                continue
            setattr(args, k, v)
    if args.model not in MODELS:
        parser.error(f"--model: unknown model {args.model!r}; available: {', '.join(sorted(MODELS))}")
    takes = MODELS[args.model][2]
    if takes is not None:
        for k in _MODEL_FLAGS:
            if k in explicit and k not in takes:
                flags = ", ".join(_flag(f) for f in takes) or "none"
                parser.error(f"{_flag(k, getattr(args, k))}: --model {args.model} does not take it (its model flags: "
                             f"{flags})")
    want = _WIDTHS.get(args.model)
    if args.widths is not None and want is not None and len(args.widths) != want:
        parser.error(f"--widths: --model {args.model} takes {want} comma-separated widths, got "
                     f"{','.join(map(str, args.widths))}")
    if args.swa_lr is not None and args.swa_start is None:
        parser.error("--swa-lr needs --swa-start")
    if args.dataset != "idx":
        for k in ("train_images", "train_labels", "test_images", "test_labels"):
            if getattr(args, k):
                parser.error(f"{_flag(k)}: only used with --dataset idx (the dataset is {args.dataset})")
    elif not args.train_images or not args.train_labels:
        parser.error("--dataset idx needs --train-images and --train-labels")
    elif bool(args.test_images) != bool(args.test_labels):
        parser.error(f"{'--test-labels' if args.test_images else '--test-images'}: pass both --test-images and "
                     "--test-labels (or neither)")
    return args


def parse_args(argv=None, parser=None):
    """Parse a ``train`` or ``bench`` command line into the namespace main() runs, with the
    preset (or the resumed checkpoint's settings) applied and the flags checked; errors exit as
    argparse's do (status 2)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    if args.command != "train":
        return args
    explicit = set(vars(build_parser(defaults=False).parse_args(argv))) - {"command"}
    return _resolve(args, explicit, parser.train_parser)


# ---------------------------------------------------------------------------- train
def _load_data(args, parser):
    """((x, y), val or None, (x_test, y_test)) with x shaped per sample as the dataset gives it:
    digits (1, 8, 8), mnist1d (1, 40), IDX images (1, H, W) or signals (L,)."""
    from . import data
    try:
        if args.dataset == "digits":
            train, test = data.load_digits(seed=args.seed, flatten=False)
        elif args.dataset == "mnist1d":
            train, test = data.load_mnist1d(seed=42, flatten=False)
        else:
            x, y = data.load_idx_dataset(args.train_images, args.train_labels, flatten=False)
            if args.test_images:
                test = data.load_idx_dataset(args.test_images, args.test_labels, flatten=False)
                if test[0].shape[1:] != x.shape[1:]:
                    parser.error(f"--test-images: samples of shape {test[0].shape[1:]} do not match the training "
                                 f"images' {x.shape[1:]}")
                train = (x, y)
            else:
                train, test = data.train_test_split(x, y, test_size=0.2, seed=args.seed)
    except (ImportError, OSError, ValueError) as exc:
        parser.error(f"--dataset {args.dataset}: {exc}")
    (x, y), (xt, yt) = train, test
    val = None
    if args.val_split > 0:
        (x, y), val = data.train_test_split(x, y, test_size=args.val_split, seed=args.seed + 1)
    return (x, y), val, (xt, yt)


def _shape_inputs(arrays, flat):
    """Flatten each x for flat-input models; give 1-D samples a channel axis for the others."""
    out = []
    for a in arrays:
        if flat:
            a = a.reshape(len(a), -1)
        elif a.ndim == 2:
            a = a[:, None, :]
        out.append(a)
    return out


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

    backend.set_backend(args.backend)
    (x, y), val, (xt, yt) = _load_data(args, parser)
    build, flat, _ = MODELS[args.model]
    x, xt = _shape_inputs((x, xt), flat)
    if val is not None:
        val = (_shape_inputs((val[0],), flat)[0], val[1])
    num_classes = int(max(y.max(), yt.max())) + 1
    frandom.manual_seed(args.seed)
    try:
        model = build(args, x.shape[1:], num_classes)
    except UsageError as exc:
        parser.error(str(exc))
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
    if args.resume:
        try:
            trainer.load_checkpoint(args.resume)
        except ValueError as exc:
            parser.error(f"--resume: {exc}")
        if trainer.epoch >= args.epochs and not args.quiet:
            print(f"the checkpoint already holds {trainer.epoch} epochs (--epochs {args.epochs}): nothing to train")
    # after load_checkpoint, which restores the saved run's metadata: this run's settings win
    trainer.metadata["cli_args"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()
                                    if k != "command"}
    with open(out / "config.json", "w") as f:
        json.dump(trainer.metadata["cli_args"], f, indent=2, sort_keys=True)
    if not args.quiet:
        n_params = sum(p.size for p in model.parameters())
        preset = f"preset {args.preset}: " if args.preset else ""
        print(f"{preset}{args.dataset}: {len(x)} train, {0 if val is None else len(val[0])} validation, {len(xt)} "
              f"test samples; {args.model} with {n_params:,} parameters; {args.optimizer}, backend {args.backend}")
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
    args = parse_args(argv, parser)
    if args.command == "bench":
        return _bench(args, extra)
    if extra:
        parser.train_parser.error(f"unrecognized arguments: -- {' '.join(extra)}")
    return _train(args, parser.train_parser)


if __name__ == "__main__":
    sys.exit(main())
