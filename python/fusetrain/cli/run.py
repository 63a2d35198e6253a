"""``fusetrain train``: load the data, build the model, optimizer, schedule and callbacks from the
resolved settings, train, evaluate on the test set and write the run folder. Under ``mpiexec -n N``
the N ranks train one model data parallel; rank 0 prints and writes the one run folder."""
from __future__ import annotations

import datetime as _dt
import json
import os
import time
from pathlib import Path

from .. import backend, callbacks as cb, data
from .. import random as frandom
from ..backend import cuda_available
from ..console import echo
from ..distributed import world as dist_world
from ..models import registry
from ..nn import init as nn_init
from ..optim import factory, lr_scheduler
from ..train import Trainer
from .settings import UsageError, fill_defaults, settings_dict


def load_data(args):
    """((x, y), val or None, (x_test, y_test)) with x shaped per sample as the dataset gives it:
    digits (1, 8, 8), mnist1d (1, 40), IDX images (1, H, W) or signals (L,)."""
    try:
        if args.dataset == "digits":
            train, test = data.load_digits(seed=args.seed, flatten=False)
        elif args.dataset == "mnist1d":
            train, test = data.load_mnist1d(seed=42, flatten=False)
        else:
            train = data.load_idx_dataset(args.train_images, args.train_labels, flatten=False)
            if args.test_images:
                test = data.load_idx_dataset(args.test_images, args.test_labels, flatten=False)
            else:
                train, test = data.train_test_split(*train, test_size=0.2, seed=args.seed)
    except (ImportError, OSError, ValueError) as exc:
        raise UsageError(f"--dataset {args.dataset}: {exc}") from exc
    if test[0].shape[1:] != train[0].shape[1:]:
        raise UsageError(f"--test-images: samples of shape {test[0].shape[1:]} do not match the training "
                         f"images' {train[0].shape[1:]}")
    (x, y), (xt, yt) = train, test
    if not len(xt):
        raise UsageError(f"--dataset {args.dataset}: the split leaves no test samples ({len(x)} in all); pass "
                         "--test-images and --test-labels")
    val = None
    if args.val_split > 0:
        try:
            (x, y), val = data.train_test_split(x, y, test_size=args.val_split, seed=args.seed + 1)
        except ValueError as exc:  # a part left empty
            raise UsageError(f"--val-split {args.val_split:g}: {exc}") from exc
    return (x, y), val, (xt, yt)


def _shape_inputs(a, flat):
    """Flatten x for flat-input models; give 1-D samples a channel axis for the others."""
    if flat:
        return a.reshape(len(a), -1)
    return a[:, None, :] if a.ndim == 2 else a


def _output_folder(args) -> Path:
    if args.out:
        out = Path(args.out)
    elif args.resume:  # a resumed run goes on in its own folder
        out = Path(args.resume).resolve().parent
    else:
        out = Path("runs") / f"{args.dataset}-{args.model}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} exists and is not a folder")
    return out


def _check_environment(args):
    """What the parser cannot see: names resolved by the library, the device, the output path."""
    if args.device == "cuda" and not cuda_available():
        raise UsageError("--device cuda: no usable CUDA GPU here (it needs an NVIDIA GPU and driver, CuPy and "
                         "fusetrain built with its CUDA module); use --device cpu")
    if "init" in registry.get(args.model).options:
        try:
            nn_init.get(args.init)
        except ValueError as exc:
            raise UsageError(f"--init: {exc}") from exc


def _callbacks(args, out, monitor):
    verbose = 0 if args.quiet else 1
    cbs = [cb.ModelCheckpoint(out / "checkpoint.npz")]
    if args.early_stopping is not None:
        cbs.insert(0, cb.EarlyStopping(monitor=monitor, patience=args.early_stopping, restore_best_weights=True,
                                       verbose=verbose))
    if args.ema is not None:
        cbs.append(cb.EMA(args.ema))
    if args.swa_start is not None:
        cbs.append(cb.SWA(args.swa_start, swa_lr=args.swa_lr))
    return cbs


def _which_weights(trainer, history):
    """Which weights the model holds after fit, i.e. which ones the test figures are for."""
    by = {type(c).__name__: c for c in trainer.callbacks}
    if "SWA" in by and by["SWA"].average is not None:
        return f"the SWA average of epochs {by['SWA'].start_epoch + 1}-{history.epoch[-1] + 1}"
    if "EMA" in by and by["EMA"].average is not None:
        return f"the EMA of the weights (decay warmed up to {by['EMA'].decay:g})"
    if history.restored_epoch is not None:
        return f"the weights of epoch {history.restored_epoch + 1}, restored by early stopping"
    return f"the weights after epoch {trainer.epoch}"


def _ending(trainer, history):
    """', stopped early: ...' when EarlyStopping ended the run."""
    stops = [c for c in trainer.callbacks if isinstance(c, cb.EarlyStopping)]
    if history.stopped_epoch is None or not stops:
        return ""
    wait = stops[0].wait
    return f", stopped early: {stops[0].monitor} had not improved for {wait} epoch{'s' if wait != 1 else ''}"


def _check_extension(args, sched, epoch):
    """A cosine schedule reaches lr 0 at the end of the run it was planned for: training past it
    would run at lr 0 and then climb back up the cosine."""
    parts = getattr(sched, "_schedulers", [sched])
    cos = [s for s in parts if isinstance(s, lr_scheduler.CosineAnnealingLR)]
    if cos:
        end = args.warmup_epochs + cos[0].T_max
        if args.epochs > end:
            raise UsageError(f"--epochs {args.epochs}: the checkpoint's cosine schedule reaches lr 0 at epoch {end} "
                             f"and cannot be extended; resume with --epochs {end} at most, or start a new run "
                             f"with --epochs {args.epochs}")


def _joined(args):
    """The process group (a world of one unless an MPI launcher started this process), on the
    GPUs when training on them with several ranks."""
    world = dist_world.init()
    if args.device == "cuda" and world.size > 1:
        world.nccl()
    return world


def train(args):
    """Run ``fusetrain train`` with resolved settings; returns the exit status."""
    args = fill_defaults(args)
    world = _joined(args)
    main = world.rank == 0
    say = echo if main else (lambda message: None)
    _check_environment(args)
    out = Path(world.broadcast_object(str(_output_folder(args)) if main else None))  # rank 0's clock names it
    backend.set_backend(args.backend)
    (x, y), val, (xt, yt) = load_data(args)
    spec = registry.get(args.model)
    x, xt = _shape_inputs(x, spec.flat_inputs), _shape_inputs(xt, spec.flat_inputs)
    if val is not None:
        val = (_shape_inputs(val[0], spec.flat_inputs), val[1])
    num_classes = int(max(y.max(), yt.max())) + 1
    frandom.manual_seed(args.seed)
    options = {k: getattr(args, k) for k in spec.options if getattr(args, k) is not None}
    try:
        model = spec(x.shape[1:], num_classes, **options)
    except registry.ModelInputError as exc:
        raise UsageError(f"--model {exc} (--dataset {args.dataset})") from exc
    opt = factory.make_optimizer(args.optimizer, model.parameters(), lr=args.lr, momentum=args.momentum,
                                 weight_decay=args.weight_decay)
    sched = factory.make_scheduler(args.schedule, opt, epochs=args.epochs, lr_decay=args.lr_decay,
                                   step_size=args.step_size, warmup_epochs=args.warmup_epochs)
    monitor = "val_loss" if val is not None else "loss"
    trainer = Trainer(model, opt, max_grad_norm=args.clip_norm or None, scheduler=sched,
                      callbacks=_callbacks(args, out, monitor), device=args.device, scheduler_monitor=monitor)
    if args.resume:
        try:
            trainer.load_checkpoint(args.resume)
        except ValueError as exc:
            raise UsageError(f"--resume: {exc}") from exc
        _check_extension(args, sched, trainer.epoch)
    # after load_checkpoint, which restores the saved run's metadata: this run's settings win
    trainer.metadata["cli_args"] = settings_dict(args)
    created = main and not out.exists()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "config.json", "w") as f:
            json.dump(trainer.metadata["cli_args"], f, indent=2, sort_keys=True)
    if not args.quiet:
        n_params = sum(p.size for p in model.parameters())
        preset = f"preset {args.preset}: " if args.preset else ""
        ranks = f"; data parallel on {world.size} ranks, batch {args.batch_size} each" if world.size > 1 else ""
        say(f"{preset}{args.dataset}: {len(x)} train, {0 if val is None else len(val[0])} validation, {len(xt)} "
              f"test samples; {args.model} with {n_params:,} parameters; {args.optimizer}, backend {args.backend}"
              f"{ranks}")
    if args.resume:
        if trainer.epoch >= args.epochs:
            say(f"nothing to train: the checkpoint already holds {trainer.epoch} epochs and --epochs is "
                  f"{args.epochs}; pass --epochs {trainer.epoch + 10} (say) to continue it")
        elif not args.quiet:
            say(f"resuming {args.resume} at epoch {trainer.epoch + 1} of {args.epochs}, writing into {out}")
    t0 = time.perf_counter()
    try:
        history = trainer.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, validation_data=val,
                              seed=args.seed, verbose=0 if args.quiet else 1)
    except BaseException:
        if created and [p.name for p in out.iterdir()] == ["config.json"]:  # a folder of this run's, holding nothing
            (out / "config.json").unlink()
            out.rmdir()
        raise
    elapsed = time.perf_counter() - t0
    res = trainer.evaluate(xt, yt)
    history.to_csv(out / "history.csv")
    trainer.save_weights(out / "model.npz")
    written = ["history.csv", "curves.png", "checkpoint.npz", "model.npz"]
    note = ""
    try:
        history.plot(out / "curves.png", title=f"{args.dataset} {args.model} ({args.optimizer})")
    except ImportError:
        written.remove("curves.png")
        note = " (no curves.png: matplotlib is not installed, pip install matplotlib)"
    except ValueError:
        written.remove("curves.png")
        note = " (no curves.png: no epoch was trained)"
    n = len(history.epoch)
    say(f"test accuracy {100 * res.get('accuracy', float('nan')):.2f}% (loss {res['loss']:.4f}) after {n} "
          f"epoch{'s' if n != 1 else ''}{_ending(trainer, history)}; trained {elapsed:.1f}s; evaluated "
          f"{_which_weights(trainer, history)}")
    say(f"wrote {os.path.join(str(out), '')}: {', '.join(written)}{note}")
    return 0
