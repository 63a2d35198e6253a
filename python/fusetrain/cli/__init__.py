"""The ``fusetrain`` command: ``train`` (an MLP or CNN classifier with every training trick as a flag,
named presets; progress bar, test accuracy, history CSV, curves PNG, checkpoint) and ``bench``
(the benchmark scripts). Every error is one line on stderr with exit status 2."""
from __future__ import annotations

import difflib
import sys
import traceback
import warnings

from ..distributed import world as dist_world
from ..models.registry import MODELS
from . import bench
from .parser import PRESETS, build_parser
from .run import train
from .settings import UsageError, resolve

__all__ = ["MODELS", "PRESETS", "UsageError", "build_parser", "main", "parse_args"]


def parse_args(argv=None, parser=None):
    """Parse a ``train`` or ``bench`` command line into the namespace main() runs, with the
    preset (or the resumed checkpoint's settings) applied and the flags checked. argparse's
    errors exit with status 2; the others raise UsageError."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = parser or build_parser(benchmarks=bench.available())
    args, unknown = parser.parse_known_args(argv)
    if args.command is None:
        parser.error("name a command: train or bench")
    if unknown:  # named by the subcommand's parser, as argparse names its other errors
        sub = parser.train_parser if args.command == "train" else parser.bench_parser
        flags = [o for a in sub._actions for o in a.option_strings]
        close = [m for u in unknown if u.startswith("--") for m in difflib.get_close_matches(u, flags, n=1)]
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        sub.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    if args.command != "train":
        return args
    explicit = set(vars(build_parser(defaults=False).parse_args(argv))) - {"command"}
    return resolve(args, explicit)


def _fail(prog, message, every_rank=False):
    """One line on stderr, exit status 2. Under an MPI launcher: an error every rank meets alike
    (a bad flag, an input every rank refused) is printed by rank 0 alone; any other ends the job,
    since the other ranks would wait for this one forever."""
    world = dist_world.current()
    if world is not None and world.size > 1 and not every_rank:
        world.abort(f"{prog}: error: {message}", exitcode=2)
    if (world.rank if world is not None else dist_world.launcher_rank()) == 0:
        print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _warning_line(message, category, filename, lineno, file=None, line=None):
    print(f"fusetrain: warning: {message}", file=sys.stderr if file is None else file)


def main(argv=None):
    """Run ``fusetrain`` with ``argv`` (default: the process's arguments); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    parser = build_parser(benchmarks=bench.available())
    if not argv:
        parser.print_help()
        return 0
    try:
        args = parse_args(argv, parser)
    except UsageError as exc:
        _fail("fusetrain train", exc)
    if args.command == "bench":
        return bench.run(args, extra)
    if extra:
        _fail("fusetrain train", f"unrecognized arguments: -- {' '.join(extra)}")
    with warnings.catch_warnings():
        warnings.showwarning = _warning_line  # one line, without the library's source line
        try:
            return train(args)
        except UsageError as exc:
            _fail("fusetrain train", exc)
        except Exception as exc:
            if args.debug:
                traceback.print_exc()
            hint = "" if args.debug else " (--debug shows the traceback)"
            _fail("fusetrain train", f"{type(exc).__name__}: {exc}{hint}", getattr(exc, "fusetrain_every_rank", False))
