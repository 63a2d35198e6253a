"""The command line as a newcomer meets it, run in real subprocesses: help with no arguments, one
line and exit status 2 for every error (nothing written), flags that do not apply refused, help
that states one default, the benchmark list, and benchmark results kept out of the repository."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fusetrain
from fusetrain.cli import bench

PACKAGE_PARENT = Path(fusetrain.__file__).resolve().parents[1]


def fusetrain_cmd(*argv, cwd, timeout=300):
    """``python -m fusetrain *argv`` in a fresh process, on the fusetrain under test."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE_PARENT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "fusetrain", *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_no_arguments_prints_the_help(tmp_path):
    proc = fusetrain_cmd(cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("usage: fusetrain") and "train" in proc.stdout and "bench" in proc.stdout


_ERRORS = [
    (["--init", "xavier"], "--init: unknown init 'xavier'; valid names: "),
    (["--out", "{file}"], "--out: {file} exists and is not a folder"),
    (["--optimizer", "adamw", "--momentum", "0.5"],
     "--momentum: --optimizer adamw does not take it (it takes: --lr, --weight-decay)"),
    (["--optimizer", "sgd", "--momentum", "0.5"], "--momentum: --optimizer sgd does not take it"),
    (["--schedule", "cosine", "--lr-decay", "0.9"], "--lr-decay: --schedule cosine does not take it"),
    (["--step-size", "5"], "--step-size: --schedule exponential does not take it"),
    (["--swa-start", "40"], "--swa-start: epoch 40 (0-based) is not before the end of --epochs 40"),
    (["--dropout", "2"], "argument --dropout: expected a value in [0, 1), got 2.0 (see fusetrain train --help)"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--optimzer", "sgd"], "unrecognized arguments: --optimzer sgd; did you mean --optimizer?"),
    (["--seed", "-1"], "argument --seed: expected a value in [0, inf), got -1 (see fusetrain train --help)"),
    (["--val-split", "0.9999"], "--val-split 0.9999: the split leaves no training samples (1438 in all; "
                                "test_size=0.9999)"),
    (["--widths", "8,8"], "--widths: --model mlp does not take it (it takes: --hidden, --activation, --init, "
                          "--batchnorm, --dropout)"),
]
if not fusetrain.cuda_available():
    _ERRORS.append((["--device", "cuda"], "--device cuda: no usable CUDA GPU here"))


@pytest.mark.parametrize("argv, needle", _ERRORS, ids=[" ".join(a) for a, _ in _ERRORS])
def test_every_error_is_one_line_with_status_2_and_writes_nothing(tmp_path, argv, needle):
    (tmp_path / "file").write_text("a file, not a folder\n")
    argv = [a.replace("{file}", str(tmp_path / "file")) for a in argv]
    proc = fusetrain_cmd("train", *argv, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("fusetrain train: error: "), proc.stderr
    assert needle.replace("{file}", str(tmp_path / "file")) in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no runs/ folder


def test_a_failure_inside_training_is_one_line_and_debug_shows_the_traceback(tmp_path):
    # a learning rate this large overflows the loss: Trainer raises FloatingPointError
    argv = ["train", "--optimizer", "sgd", "--lr", "1e30", "--no-batchnorm", "--clip-norm", "0", "--quiet",
            "--out", "run"]
    proc = fusetrain_cmd(*argv, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "fusetrain train: error: FloatingPointError: non-finite" in proc.stderr
    assert proc.stderr.rstrip().endswith("(--debug shows the traceback)")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # the failed run left no folder behind
    proc = fusetrain_cmd(*argv, "--debug", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("Traceback (most recent call last)")
    assert proc.stderr.splitlines()[-1].startswith("fusetrain train: error: FloatingPointError")


def test_help_shows_one_default_per_flag(tmp_path):
    text = fusetrain_cmd("train", "--help", cwd=tmp_path).stdout
    assert "(default: None)" not in text and "(default: False)" not in text
    flat = " ".join(text.split())
    assert "(default per optimizer: sgd 0.05, momentum 0.05, normalized 0.05, adagrad 0.05, rmsprop 0.001, " \
           "adam 0.003, adamw 0.003)" in flat
    assert "(default: momentum 0.9, normalized 0.9, rmsprop 0)" in flat
    assert "99.1% test accuracy" in flat and "99.4%" not in flat


def test_bench_help_lists_the_benchmarks(tmp_path):
    folder = bench.bench_dir()
    if folder is None:
        pytest.skip("no benchmarks/ folder: fusetrain runs from an installed copy outside the checkout")
    proc = fusetrain_cmd("bench", "--help", cwd=folder.parent)  # where a user of the checkout runs it
    assert proc.returncode == 0
    listed = [line.split(":")[0].strip() for line in proc.stdout.split("benchmarks:\n")[1].splitlines()
              if line.startswith("  ") and not line.startswith("    ")]
    assert listed[:len(bench.available())] == sorted(p.stem[len("bench_"):] for p in folder.glob("bench_*.py"))


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.slow
def test_bench_results_go_to_the_output_folder_not_the_published_ones(tmp_path):
    folder = bench.bench_dir()
    if folder is None:
        pytest.skip("no benchmarks/ folder: fusetrain runs from an installed copy outside the checkout")
    published = _digests(folder / "results")
    proc = fusetrain_cmd("bench", "dropout", "--out", tmp_path / "out", "--", "--repeats", "1", cwd=folder.parent)
    assert proc.returncode == 0, proc.stderr
    rows = (tmp_path / "out" / "dropout.csv").read_text().splitlines()
    assert rows[0].startswith("date,machine,bench,impl") and len(rows) >= 3
    assert _digests(folder / "results") == published


def test_a_library_warning_is_one_line_without_a_source_line(tmp_path):
    # early stopping with patience 0 ends the run at its first epoch without improvement (27 here),
    # before SWA's start epoch
    proc = fusetrain_cmd("train", "--hidden", "16", "--early-stopping", "0", "--swa-start", "30", "--quiet",
                         "--out", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ("fusetrain: warning: SWA: training ended before start_epoch=30 (0-based); no weights "
                           "were averaged\n")
    assert "stopped early: val_loss had not improved for 1 epoch;" in proc.stdout


def test_extending_a_finished_cosine_schedule_is_refused_and_changes_nothing(tmp_path):
    """A cosine schedule anneals to 0 at the run's last epoch: --resume with more epochs would train
    at lr 0 and then climb back up the cosine, so the CLI says why it will not."""
    assert fusetrain_cmd("train", "--epochs", "2", "--schedule", "cosine", "--early-stopping", "off", "--quiet",
                         "--out", "c", cwd=tmp_path).returncode == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "c").iterdir()}
    proc = fusetrain_cmd("train", "--resume", "c/checkpoint.npz", "--epochs", "5", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == "" and proc.stderr.count("\n") == 1, proc.stderr
    assert ("--epochs 5: the checkpoint's cosine schedule reaches lr 0 at epoch 2 and cannot be extended"
            in proc.stderr), proc.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "c").iterdir()} == before
    # an interrupted cosine run (the schedule planned for 4 epochs) resumes as before
    assert fusetrain_cmd("train", "--epochs", "4", "--schedule", "cosine", "--early-stopping", "off", "--quiet",
                         "--out", "d", cwd=tmp_path).returncode == 0
