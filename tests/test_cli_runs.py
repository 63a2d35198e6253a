"""Whole `fusetrain train` runs in real subprocesses, as the README shows them: early stopping that
says what it did, a stopped run resumed with more epochs in its own folder, config.json with the
settings that ran, and the EMA example against the same run without EMA."""
import csv
import json
import re

import pytest

from fusetrain.train import checkpoint as ckpt
from test_cli_usage import fusetrain_cmd

_REPORT = re.compile(r"test accuracy (\d+\.\d\d)% \(loss \d+\.\d{4}\) after (\d+) epochs?(.*); trained [\d.]+s; "
                     r"evaluated (.+)$", re.M)


def _report(stdout):
    m = _REPORT.search(stdout)
    assert m, stdout
    return float(m.group(1)), int(m.group(2)), m.group(3), m.group(4)


def _epochs_in_csv(path):
    with open(path, newline="") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


@pytest.mark.slow
def test_early_stopping_reports_and_a_resumed_run_trains_on_in_its_folder(tmp_path):
    proc = fusetrain_cmd("train", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run,) = (tmp_path / "runs").iterdir()
    _, epochs, ending, weights = _report(proc.stdout)
    history = ckpt.read(run / "checkpoint.npz")["history"]
    val = history["val_loss"]
    best = min(range(len(val)), key=val.__getitem__)
    # the stop and the restored epoch, as the history shows them: 8 epochs after the best one
    assert epochs < 40 and epochs == len(val) == best + 1 + 8
    assert ending == ", stopped early: val_loss had not improved for 8 epochs"
    assert weights == f"the weights of epoch {best + 1}, restored by early stopping"
    assert _epochs_in_csv(run / "history.csv") == list(range(1, epochs + 1))
    config = json.loads((run / "config.json").read_text())
    assert (config["lr"], config["weight_decay"], config["momentum"], config["epochs"]) == (3e-3, 1e-2, None, 40)

    # a flag repeating the resolved value is accepted; another value is refused, quoting the saved one
    refused = fusetrain_cmd("train", "--resume", run / "checkpoint.npz", "--lr", "0.01", cwd=tmp_path)
    assert refused.returncode == 2
    assert "--lr: a resumed run keeps the checkpoint's settings (lr 0.003)" in refused.stderr

    proc = fusetrain_cmd("train", "--resume", run / "checkpoint.npz", "--epochs", "60", "--lr", "0.003",
                         cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [run.name]  # the same folder
    assert f"resuming {run / 'checkpoint.npz'} at epoch {epochs + 1} of 60, writing into {run}" in proc.stdout
    assert f"EarlyStopping: the resumed run had stopped after epoch {epochs}; re-armed with patience 8" in proc.stdout
    _, total, _, _ = _report(proc.stdout)
    assert total >= epochs + 8  # at least the re-armed patience, not one epoch
    assert _epochs_in_csv(run / "history.csv") == list(range(1, total + 1))
    assert json.loads((run / "config.json").read_text())["epochs"] == 60

    # a budget the checkpoint already holds: nothing to train, and it says so
    proc = fusetrain_cmd("train", "--resume", run / "checkpoint.npz", "--epochs", str(total), "--quiet",
                         cwd=tmp_path)
    assert proc.returncode == 0
    assert f"nothing to train: the checkpoint already holds {total} epochs and --epochs is {total}" in proc.stdout


@pytest.mark.slow
def test_the_readme_ema_example_does_not_lose_accuracy(tmp_path):
    example = ["--init", "glorot_uniform", "--activation", "tanh"]
    with_ema = fusetrain_cmd("train", *example, "--ema", "0.999", "--quiet", "--out", "ema", cwd=tmp_path)
    without = fusetrain_cmd("train", *example, "--quiet", "--out", "plain", cwd=tmp_path)
    assert with_ema.returncode == 0 and without.returncode == 0, with_ema.stderr + without.stderr
    acc_ema, _, _, weights_ema = _report(with_ema.stdout)
    acc, _, _, weights = _report(without.stdout)
    assert weights_ema == "the EMA of the weights (decay warmed up to 0.999)"
    assert weights.endswith("restored by early stopping")
    assert acc_ema >= acc, (acc_ema, acc)
