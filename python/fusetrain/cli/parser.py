"""The ``fusetrain`` argument parser: flag types, the named presets, help that shows one default per
flag, and errors as one line (no 20-line usage block in front of them)."""
from __future__ import annotations

import argparse
import textwrap

from ..distributed import world as dist_world
from ..models import registry
from ..optim import factory

# name -> (description, settings). Explicit flags override a preset's settings; the preset's lr and
# weight decay belong to its optimizer, so an explicit --optimizer of another kind drops them too.
PRESETS = {
    "mnist1d-cnn": ("the recipe of examples/mnist1d_cnn.py (99.1% test accuracy there, see "
                    "benchmarks/results/mnist1d_ablation.md): all 4000 training signals, no early stopping",
                    dict(dataset="mnist1d", model="cnn1d", batchnorm=True, dropout=0.2, optimizer="adamw", lr=3e-3,
                         weight_decay=1e-2, clip_norm=1.0, schedule="exponential", lr_decay=0.95, epochs=30,
                         batch_size=128, val_split=0.0, early_stopping=None)),
}
OPTIMIZER_BOUND = ("lr", "weight_decay")


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line: the message and where the help is."""

    def error(self, message):
        # under an MPI launcher every rank parses the same command line: rank 0 says it once
        line = f"{self.prog}: error: {message} (see {self.prog} --help)\n"
        self.exit(2, line if dist_world.launcher_rank() == 0 else None)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the option help, except where there is none (the help then says what decides
    it) and for switches; the description and the preset list keep their line breaks."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def int_list(text):
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        vals = ()
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints such as 256,256, got {text!r}")
    return vals


def bounded(lo, hi=None, lo_open=False, hi_open=False, kind=float):
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


def patience(text):
    if text.lower() in ("off", "none", "no"):
        return None
    return bounded(0, kind=int)(text)


def flag(dest, value=None):
    """The command-line spelling of setting ``dest`` (``--no-batchnorm`` for batchnorm False)."""
    if value is False and dest == "batchnorm":
        return "--no-batchnorm"
    return "--" + dest.replace("_", "-")


def _presets_epilog():
    lines = ["presets (--preset NAME; explicit flags override these settings):"]
    for name, (about, values) in PRESETS.items():
        lines.append(textwrap.fill(f"{name}: {about}", 100, initial_indent="  ", subsequent_indent="    "))
        flags = []
        for k, v in values.items():
            if isinstance(v, bool):
                flags.append(flag(k, v) if not v else flag(k))
            else:
                flags.append(f"{flag(k)} {'off' if v is None else v}")
        lines.append(textwrap.fill("= " + " ".join(flags), 100, initial_indent="    ", subsequent_indent="      "))
    return "\n".join(lines)


def _per_optimizer(key):
    return ", ".join(f"{name} {factory.optimizer_defaults(name)[key]:g}" for name in factory.OPTIMIZERS
                     if key in factory.optimizer_defaults(name))


def build_parser(defaults=True, benchmarks=()):
    """The ``fusetrain`` argument parser. ``defaults=False`` leaves every ``train`` option that is
    not on the command line out of the namespace (how the settings tell explicit flags from
    defaults). ``benchmarks``: (name, description) pairs that ``bench --help`` lists."""
    p = Parser(prog="fusetrain", description="Fast neural-network training on fused kernels.")
    sub = p.add_subparsers(dest="command", metavar="{train,bench}")
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
    add(d, "--test-images", help="IDX test images for --dataset idx (without them a fifth of the training "
        "images is held out for testing)")
    add(d, "--test-labels", help="IDX test labels for --dataset idx")
    add(d, "--val-split", type=bounded(0, 1, hi_open=True), default=0.1,
        help="fraction of the training set held out for validation (early stopping, plateau)")
    m = t.add_argument_group("model")
    add(m, "--model", choices=sorted(registry.MODELS), default="mlp",
        help="mlp: any data, flattened; cnn1d: 1-D signals (N, C, L) such as mnist1d; resnet, inception: images "
             "(N, C, H, W) such as digits")
    add(m, "--hidden", type=int_list, default=(256, 256), help="mlp: hidden widths, comma-separated")
    add(m, "--widths", type=int_list, default=None,
        help="conv channel widths, comma-separated: 3 for cnn1d (its default 32,64,128), 2 for resnet (32,64)")
    add(m, "--init", default="he_normal", help="mlp: weight init: he_normal, he_uniform, glorot_uniform, "
        "glorot_normal, lecun_normal, gaussian, ...")
    add(m, "--batchnorm", action=argparse.BooleanOptionalAction, default=True,
        help="batch normalization (mlp, cnn1d; resnet and inception always have it)")
    add(m, "--dropout", type=bounded(0, 1, hi_open=True), default=0.2, help="dropout probability")
    add(m, "--activation", choices=("relu", "leaky_relu", "tanh", "sigmoid"), default="relu", help="mlp")
    o = t.add_argument_group("optimization")
    add(o, "--optimizer", choices=factory.OPTIMIZERS, default="adamw", help="momentum is Nesterov SGD")
    add(o, "--lr", type=bounded(0, lo_open=True), default=None,
        help=f"learning rate (default per optimizer: {_per_optimizer('lr')})")
    add(o, "--momentum", type=bounded(0, 1, hi_open=True), default=None,
        help=f"for the optimizers that take it (default: {_per_optimizer('momentum')})")
    add(o, "--weight-decay", type=bounded(0), default=None,
        help="weight decay (default 1e-2 for adamw, 0 for the others)")
    add(o, "--clip-norm", type=bounded(0), default=1.0, help="clip by global gradient norm (0: off)")
    add(o, "--schedule", choices=factory.SCHEDULES, default="exponential", help="per-epoch LR schedule")
    add(o, "--lr-decay", type=bounded(0, 1, lo_open=True), default=0.98,
        help="gamma of the exponential/step schedule, factor of the plateau schedule")
    add(o, "--step-size", type=bounded(1, kind=int), default=10, help="epochs per step of --schedule step")
    add(o, "--warmup-epochs", type=bounded(0, kind=int), default=0, help="linear LR warm-up epochs")
    add(o, "--early-stopping", type=patience, default=8, metavar="PATIENCE",
        help="stop after PATIENCE epochs without val_loss improvement, restoring the best weights ('off' to disable)")
    add(o, "--ema", type=bounded(0, 1, lo_open=True, hi_open=True), default=None, metavar="DECAY",
        help="evaluate an exponential moving average of the weights, its decay warmed up to DECAY (e.g. 0.999)")
    add(o, "--swa-start", type=bounded(0, kind=int), default=None, metavar="EPOCH",
        help="stochastic weight averaging from this (0-based) epoch on")
    add(o, "--swa-lr", type=bounded(0, lo_open=True), default=None, help="constant LR during SWA")
    r = t.add_argument_group("run")
    add(r, "--epochs", type=bounded(1, kind=int), default=40,
        help="number of epochs (with --resume: the new total, by default the checkpoint's)")
    add(r, "--batch-size", type=bounded(1, kind=int), default=64, help="samples per step")
    add(r, "--seed", type=bounded(0, kind=int), default=0,
        help="seeds initialization, dropout, shuffling and the digits/IDX splits")
    add(r, "--device", choices=("cpu", "cuda"), default="cpu", help="cuda needs a GPU, CuPy and the CUDA build")
    add(r, "--backend", choices=("fused", "numpy"), default="fused",
        help="fused kernels, or the NumPy twins (to compare)")
    add(r, "--out", default=None, help="output folder (default runs/<dataset>-<model>-<time>; with --resume the "
        "checkpoint's folder)")
    add(r, "--resume", metavar="CKPT", default=None,
        help="continue the run saved in CKPT (its settings are reused; flags may not change them)")
    add(r, "--quiet", action="store_true", help="no progress bars, only the result")
    add(r, "--debug", action="store_true", help="show the traceback of an error")
    listing = "\n".join(textwrap.fill(f"{name}: {about}", 100, initial_indent="  ", subsequent_indent="    ")
                        for name, about in benchmarks) or "  (none found: the benchmarks ship with a source checkout)"
    b = sub.add_parser("bench", help="run the benchmarks (needs a source checkout)", formatter_class=_HelpFormatter,
                       description="Run benchmarks/ scripts: all of them (run_all.py), or the named ones, e.g.\n"
                                   "'fusetrain bench train optim'. Arguments after '--' go to the scripts.\n"
                                   "Results go to --out, never into the repository's published results.\n\n"
                                   "benchmarks:\n" + listing)
    b.add_argument("names", nargs="*", help="benchmark names (listed above); none: all")
    b.add_argument("--quick", action="store_true", help="fewer repeats (run_all only)")
    b.add_argument("--out", default="runs/bench", help="folder for the result CSVs and charts")
    p.train_parser = t  # errors about train flags name the train command, as argparse's own do
    p.bench_parser = b
    return p
