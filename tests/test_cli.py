"""The fusetrain command line end to end on small data: output files against the run's own numbers,
the printed test accuracy against a NumPy evaluation of the saved model, bit-for-bit --resume,
argparse-quality errors, every registered model, the mnist1d-cnn preset, IDX files, and bench."""
import csv
import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fusetrain
from fusetrain import cli, data
from fusetrain.models import CNN1d, MLP, SmallInception, SmallResNet
from fusetrain.train import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[1]
_RESULT = re.compile(r"test accuracy (\d+\.\d\d)% \(loss (\d+\.\d{4})\) after (\d+) epochs?\b")


def _run(capsys, *argv):
    """cli.main(argv) -> (exit status, stdout); the final line must be the test-accuracy report."""
    rc = cli.main(["train", *argv])
    out = capsys.readouterr().out
    return rc, out


def _reported(out):
    """(accuracy string such as '96.10', loss, epochs) from the CLI's final line."""
    m = _RESULT.search(out)
    assert m, f"no test-accuracy line in {out!r}"
    return m.group(1), float(m.group(2)), int(m.group(3))


def _numpy_eval(model, x, y):
    """(accuracy, mean cross-entropy) of the model's eval-mode logits, computed in float64 NumPy."""
    model.eval()
    x = np.ascontiguousarray(x, dtype=np.float32)
    # batches of 256 as Trainer.evaluate uses, so the logits carry the same float32 rounding
    logits = np.concatenate([np.asarray(model(x[i:i + 256]), dtype=np.float64) for i in range(0, len(x), 256)])
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(np.mean(logits.argmax(axis=1) == y)), float(-logp[np.arange(len(y)), y].mean())


def _assert_report_matches(out, model, weights, x, y):
    """Load ``weights`` into ``model`` and check the printed accuracy (2 decimals) and loss (4 decimals)."""
    ckpt.load_weights(weights, model)
    acc, loss = _numpy_eval(model, x, y)
    shown_acc, shown_loss, _ = _reported(out)
    assert shown_acc == f"{100 * acc:.2f}"
    assert abs(shown_loss - loss) <= 5e-5 + 1e-5 * loss


def _model_arrays(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files if k.startswith("model/")}


def _read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], [[float(v) for v in r] for r in rows[1:]]


# ----------------------------------------------------------------------------- the default job
def test_no_flags_is_the_digits_mlp_with_every_trick():
    args = cli.parse_args(["train"])
    expected = dict(preset=None, dataset="digits", model="mlp", hidden=(256, 256), widths=None, batchnorm=True,
                    dropout=0.2, activation="relu", init="he_normal", optimizer="adamw", lr=None,
                    weight_decay=None, clip_norm=1.0, schedule="exponential", lr_decay=0.98, early_stopping=8,
                    val_split=0.1, epochs=40, batch_size=64, seed=0, ema=None, swa_start=None, resume=None)
    assert {k: getattr(args, k) for k in expected} == expected


def test_default_job_writes_its_outputs_and_reports_the_saved_models_accuracy(capsys, tmp_path):
    out_dir = tmp_path / "run"
    rc, out = _run(capsys, "--epochs", "2", "--quiet", "--out", str(out_dir))
    assert rc == 0
    for name in ("history.csv", "checkpoint.npz", "model.npz", "config.json"):
        assert (out_dir / name).is_file(), name
    try:
        import matplotlib  # noqa: F401
        assert (out_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    except ImportError:
        assert "no curves.png: matplotlib is not installed" in out
    assert _reported(out)[2] == 2

    config = json.loads((out_dir / "config.json").read_text())
    assert config["epochs"] == 2 and config["model"] == "mlp" and config["hidden"] == [256, 256]
    assert config["out"] == str(out_dir) and config["optimizer"] == "adamw" and config["preset"] is None
    # the settings that ran, not the parser's "per optimizer" placeholders
    assert (config["lr"], config["weight_decay"], config["momentum"]) == (3e-3, 1e-2, None)

    # history.csv holds the run's History, as the checkpoint stores it, one row per epoch
    header, rows = _read_csv(out_dir / "history.csv")
    saved = ckpt.read(out_dir / "checkpoint.npz")
    assert header == ["epoch"] + list(saved["history"])
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr"} <= set(header)
    assert [r[0] for r in rows] == [1, 2] and saved["epoch"] == 2  # counted from 1, as the bar and the plot
    for j, key in enumerate(header[1:], start=1):
        assert [r[j] for r in rows] == saved["history"][key], key
    col = {k: [r[j] for r in rows] for j, k in enumerate(header)}
    # AdamW's default 3e-3, decayed by 0.98 after each epoch
    assert col["lr"] == pytest.approx([3e-3, 3e-3 * 0.98], rel=1e-9)

    # the data the run saw, rebuilt independently: digits split with the seed, 10% held out with seed + 1
    (x, y), (xt, yt) = data.load_digits(seed=0)
    (_, _), (xv, yv) = data.train_test_split(x, y, test_size=0.1, seed=1)
    # the last epoch's validation numbers are those of the epoch-2 weights in checkpoint.npz
    model = MLP(64, (256, 256), 10, batchnorm=True, dropout=0.2)
    ckpt.load_weights(out_dir / "checkpoint.npz", model)
    val_acc, val_loss = _numpy_eval(model, xv, yv)
    assert col["val_accuracy"][-1] == pytest.approx(val_acc, abs=1e-12)
    assert col["val_loss"][-1] == pytest.approx(val_loss, rel=1e-5)
    # the printed test accuracy is that of model.npz on the test split
    _assert_report_matches(out, MLP(64, (256, 256), 10, batchnorm=True, dropout=0.2), out_dir / "model.npz",
                           xt, yt)


def test_python_dash_m_fusetrain_runs_the_same_command(tmp_path):
    out_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "fusetrain", "train", "--epochs", "1", "--hidden", "16",
                           "--quiet", "--out", str(out_dir)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    (_, _), (xt, yt) = data.load_digits(seed=0)
    _assert_report_matches(proc.stdout, MLP(64, (16,), 10, batchnorm=True, dropout=0.2), out_dir / "model.npz",
                           xt, yt)
    assert json.loads((out_dir / "config.json").read_text())["hidden"] == [16]


# ----------------------------------------------------------------------------- resume
def test_resume_continues_bit_for_bit_and_keeps_the_settings(capsys, tmp_path):
    common = ["--hidden", "24,12", "--seed", "3", "--quiet"]
    assert _run(capsys, *common, "--epochs", "2", "--out", str(tmp_path / "a"))[0] == 0
    rc, out_b = _run(capsys, "--resume", str(tmp_path / "a" / "checkpoint.npz"), "--epochs", "4", "--quiet",
                     "--out", str(tmp_path / "b"))
    assert rc == 0 and _reported(out_b)[2] == 4
    rc, out_c = _run(capsys, *common, "--epochs", "4", "--out", str(tmp_path / "c"))
    assert rc == 0
    for name in ("checkpoint.npz", "model.npz"):
        resumed, straight = _model_arrays(tmp_path / "b" / name), _model_arrays(tmp_path / "c" / name)
        assert resumed.keys() == straight.keys() and len(resumed) > 0
        for k in resumed:
            assert np.array_equal(resumed[k], straight[k]), f"{name} {k}"
    assert (tmp_path / "b" / "history.csv").read_text() == (tmp_path / "c" / "history.csv").read_text()
    assert _reported(out_b)[:2] == _reported(out_c)[:2]
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["hidden"] == [24, 12] and config["seed"] == 3 and config["epochs"] == 4

    # without --epochs the checkpoint's total is kept: nothing more to train, same weights
    assert _run(capsys, "--resume", str(tmp_path / "a" / "checkpoint.npz"), "--quiet",
                "--out", str(tmp_path / "d"))[0] == 0
    assert json.loads((tmp_path / "d" / "config.json").read_text())["epochs"] == 2
    again, first = _model_arrays(tmp_path / "d" / "model.npz"), _model_arrays(tmp_path / "a" / "model.npz")
    assert all(np.array_equal(again[k], first[k]) for k in first)

    # a flag repeating the saved value is accepted; one changing it is refused, naming it
    assert _run(capsys, "--resume", str(tmp_path / "a" / "checkpoint.npz"), "--hidden", "24,12", "--quiet",
                "--out", str(tmp_path / "e"))[0] == 0
    with pytest.raises(SystemExit) as exc:
        _run(capsys, "--resume", str(tmp_path / "a" / "checkpoint.npz"), "--hidden", "32", "--out",
             str(tmp_path / "f"))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--hidden" in err and "[24, 12]" in err and not (tmp_path / "f").exists()


# ----------------------------------------------------------------------------- errors
def _signals_idx(tmp_path, n=24, length=40):
    rng = np.random.default_rng(5)
    data.write_idx(tmp_path / "sig", rng.integers(0, 256, size=(n, length), dtype=np.uint8))
    data.write_idx(tmp_path / "sig-labels", (np.arange(n) % 3).astype(np.uint8))
    return ["--dataset", "idx", "--train-images", str(tmp_path / "sig"), "--train-labels",
            str(tmp_path / "sig-labels")]


@pytest.mark.parametrize("case,argv,needle", [
    ("dropout", ["--dropout", "1.5"], "argument --dropout: expected a value in [0, 1), got 1.5"),
    ("optimizer", ["--optimizer", "foo"], "argument --optimizer: invalid choice: 'foo'"),
    ("hidden", ["--hidden", "0"], "argument --hidden"),
    ("hidden-text", ["--hidden", "a,b"], "argument --hidden"),
    ("lr", ["--lr", "-1"], "argument --lr: expected a value in (0, inf), got -1.0"),
    ("lr-nan", ["--lr", "nan"], "argument --lr"),
    ("preset", ["--preset", "nope"], "argument --preset: invalid choice: 'nope'"),
    ("missing", ["--resume", "{tmp}/missing.npz"], "--resume: checkpoint '{tmp}/missing.npz' does not exist"),
    ("not-npz", ["--resume", "{tmp}/notes.txt"], "--resume: {tmp}/notes.txt: the file is truncated, corrupt or not a .npz checkpoint"),
    ("weights-only", ["--resume", "{tmp}/weights.npz"], "was not written by 'fusetrain train'"),
    ("cnn1d-images", ["--model", "cnn1d"], "--model cnn1d needs 1-D signals"),
    ("resnet-signals", ["--model", "resnet", "{signals}"], "--model resnet needs images"),
    ("resnet-bn", ["--model", "resnet", "--no-batchnorm"], "--no-batchnorm: --model resnet does not take it"),
    ("cnn1d-hidden", ["--model", "cnn1d", "--hidden", "8"], "--hidden: --model cnn1d does not take it"),
    ("mlp-widths", ["--widths", "8,8"], "--widths: --model mlp does not take it"),
    ("widths-count", ["--model", "resnet", "--widths", "3,4,5"], "--widths: --model resnet takes 2"),
    ("idx-files", ["--dataset", "idx"], "--dataset idx needs --train-images and --train-labels"),
    ("idx-only", ["--train-images", "x"], "--train-images: only used with --dataset idx"),
    ("swa", ["--swa-lr", "0.1"], "--swa-lr needs --swa-start"),
])
def test_invalid_flags_are_argparse_errors_naming_the_flag(capsys, tmp_path, case, argv, needle):
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    ckpt.save_checkpoint(tmp_path / "weights.npz", MLP(64, (4,), 10))
    signals = _signals_idx(tmp_path) if "{signals}" in argv else []
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv if a != "{signals}"] + signals
    out_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        _run(capsys, *argv, "--epochs", "1", "--quiet", "--out", str(out_dir))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    # one line, no usage block in front of it
    assert err.count("\n") == 1 and err.startswith("fusetrain train: error: ")
    assert needle.replace("{tmp}", str(tmp_path)) in err
    assert not out_dir.exists()


# ----------------------------------------------------------------------------- models
def _tiny_idx(tmp_path, shape, n_train=48, n_test=16, classes=4):
    """Train and test IDX files of uint8 samples with the given per-sample shape; returns the
    flags and the test set as the CLI reads it (pixels / 255, (N, 1, ...))."""
    rng = np.random.default_rng(11)
    paths = {}
    arrays = {}
    for part, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
        y = (np.arange(n) % classes).astype(np.uint8)
        data.write_idx(tmp_path / f"{part}-images.gz", x)
        data.write_idx(tmp_path / f"{part}-labels", y)
        paths[part] = (tmp_path / f"{part}-images.gz", tmp_path / f"{part}-labels")
        arrays[part] = (x.astype(np.float32)[:, None] / 255.0, y.astype(np.int64))
    flags = ["--dataset", "idx", "--train-images", str(paths["train"][0]), "--train-labels", str(paths["train"][1]),
             "--test-images", str(paths["test"][0]), "--test-labels", str(paths["test"][1])]
    return flags, arrays["test"]


MODEL_CASES = [
    ("mlp", (8, 8), ["--hidden", "8"], lambda: MLP(64, (8,), 4, batchnorm=True, dropout=0.2), True),
    ("cnn1d", (40,), ["--widths", "4,4,8"], lambda: CNN1d(1, 4, channels=(4, 4, 8)), False),
    ("cnn1d", (40,), ["--widths", "4,6,8", "--no-batchnorm", "--dropout", "0"],
     lambda: CNN1d(1, 4, channels=(4, 6, 8), batchnorm=False, dropout=0.0), False),
    ("resnet", (8, 8), ["--widths", "4,8"], lambda: SmallResNet(1, 4, widths=(4, 8)), False),
    ("inception", (6, 7), [], lambda: SmallInception(1, 4), False),
]


def test_every_registered_model_has_a_case():
    assert set(cli.MODELS) == {name for name, *_ in MODEL_CASES}


@pytest.mark.parametrize("name,shape,flags,make,flat", MODEL_CASES)
def test_each_model_trains_one_epoch_on_tiny_data(capsys, tmp_path, name, shape, flags, make, flat):
    data_flags, (xt, yt) = _tiny_idx(tmp_path, shape)
    out_dir = tmp_path / "run"
    rc, out = _run(capsys, *data_flags, "--model", name, *flags, "--epochs", "1", "--batch-size", "16",
                   "--seed", "2", "--quiet", "--out", str(out_dir))
    assert rc == 0 and _reported(out)[2] == 1 and " after 1 epoch;" in out  # singular
    saved = ckpt.read(out_dir / "checkpoint.npz")
    assert saved["epoch"] == 1 and math.isfinite(saved["history"]["loss"][0])
    # model.npz fits (keys and shapes) a model built independently for these flags, and its
    # accuracy on the test file is the one printed
    if flat:
        xt = xt.reshape(len(xt), -1)
    _assert_report_matches(out, make(), out_dir / "model.npz", xt, yt)
    # and one epoch changed the weights from the seed's initialization
    fusetrain.manual_seed(2)
    init = make().state_dict()
    trained = ckpt.read(out_dir / "model.npz")["model"]["state"]
    assert trained.keys() == init.keys()
    assert any(not np.array_equal(trained[k], v) for k, v in init.items() if k.endswith("weight"))


# ----------------------------------------------------------------------------- preset
def _example_recipe():
    spec = importlib.util.spec_from_file_location("mnist1d_cnn_example", REPO / "examples" / "mnist1d_cnn.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.RECIPE


def test_preset_sets_the_example_recipe_and_explicit_flags_override_it():
    recipe = _example_recipe()
    args = cli.parse_args(["train", "--preset", "mnist1d-cnn"])
    assert (args.dataset, args.model, args.val_split, args.early_stopping, args.schedule) == \
        ("mnist1d", "cnn1d", 0.0, None, "exponential")
    assert (args.batchnorm, args.dropout, args.optimizer, args.lr, args.weight_decay, args.clip_norm,
            args.lr_decay, args.epochs, args.batch_size, args.seed) == \
        (recipe["batchnorm"], recipe["dropout"], recipe["optimizer"], recipe["lr"], recipe["weight_decay"],
         recipe["clip"], recipe["decay"], recipe["epochs"], recipe["batch_size"], recipe["seed"])
    # explicit flags win, also when they repeat the parser's default (64 batch, 8 patience, 0.1 split)
    args = cli.parse_args(["train", "--preset", "mnist1d-cnn", "--epochs", "3", "--no-batchnorm", "--dropout", "0",
                           "--batch-size", "64", "--early-stopping", "8", "--val-split", "0.1"])
    assert (args.epochs, args.batchnorm, args.dropout, args.batch_size, args.early_stopping, args.val_split) == \
        (3, False, 0.0, 64, 8, 0.1)
    assert (args.model, args.lr, args.lr_decay) == ("cnn1d", recipe["lr"], recipe["decay"])
    # the preset's lr and weight decay belong to AdamW: another optimizer gets its own defaults
    args = cli.parse_args(["train", "--preset", "mnist1d-cnn", "--optimizer", "sgd"])
    assert (args.optimizer, args.lr, args.weight_decay, args.lr_decay) == ("sgd", None, None, recipe["decay"])
    args = cli.parse_args(["train", "--preset", "mnist1d-cnn", "--optimizer", "sgd", "--lr", "0.1"])
    assert (args.lr, args.weight_decay) == (0.1, None)


def test_help_documents_the_presets(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--preset {mnist1d-cnn}" in text
    for piece in ("mnist1d-cnn:", "--dataset mnist1d", "--model cnn1d", "--lr 0.003", "--weight-decay 0.01",
                  "--clip-norm 1.0", "--lr-decay 0.95", "--epochs 30", "--batch-size 128", "--early-stopping off"):
        assert piece in text, piece


def test_preset_run_on_mnist1d(capsys, tmp_path):
    pytest.importorskip("mnist1d")
    out_dir = tmp_path / "run"
    rc, out = _run(capsys, "--preset", "mnist1d-cnn", "--epochs", "1", "--widths", "4,4,8", "--quiet",
                   "--out", str(out_dir))
    assert rc == 0
    config = json.loads((out_dir / "config.json").read_text())
    assert {k: config[k] for k in ("preset", "dataset", "model", "widths", "epochs", "batch_size", "lr",
                                   "lr_decay", "dropout", "val_split", "early_stopping")} == \
        dict(preset="mnist1d-cnn", dataset="mnist1d", model="cnn1d", widths=[4, 4, 8], epochs=1, batch_size=128,
             lr=3e-3, lr_decay=0.95, dropout=0.2, val_split=0.0, early_stopping=None)
    history = ckpt.read(out_dir / "checkpoint.npz")["history"]
    assert "val_loss" not in history and history["lr"] == [3e-3]
    (x, _), (xt, yt) = data.load_mnist1d(flatten=False)
    assert x.shape == (4000, 1, 40)
    _assert_report_matches(out, CNN1d(1, 10, channels=(4, 4, 8), batchnorm=True, dropout=0.2),
                           out_dir / "model.npz", xt, yt)


# ----------------------------------------------------------------------------- IDX data
def test_idx_dataset_without_test_files_splits_off_a_fifth(capsys, tmp_path):
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, size=(45, 5, 6), dtype=np.uint8)
    labels = (np.arange(45) % 3).astype(np.uint8)
    data.write_idx(tmp_path / "img", images)
    data.write_idx(tmp_path / "lab.gz", labels)
    flags = ["--dataset", "idx", "--train-images", str(tmp_path / "img"), "--train-labels", str(tmp_path / "lab.gz")]
    rc, out = _run(capsys, *flags, "--hidden", "8", "--epochs", "2", "--batch-size", "8", "--seed", "5", "--quiet",
                   "--out", str(tmp_path / "run"))
    assert rc == 0 and _reported(out)[2] == 2
    x = images.reshape(45, 30).astype(np.float32) / 255.0
    (_, _), (xt, yt) = data.train_test_split(x, labels.astype(np.int64), test_size=0.2, seed=5)
    assert len(xt) == 9
    _assert_report_matches(out, MLP(30, (8,), 3, batchnorm=True, dropout=0.2), tmp_path / "run" / "model.npz",
                           xt, yt)

    # test files of another image size, half a test pair, and a broken file are refused before training
    data.write_idx(tmp_path / "small", images[:, :4])
    broken = tmp_path / "broken"
    broken.write_bytes(b"\x00\x00\x08\x03" + b"\x00\x00\x00\x09")
    for extra, needle in ((["--test-images", str(tmp_path / "small"), "--test-labels", str(tmp_path / "lab.gz")],
                           "--test-images: samples of shape (1, 4, 6) do not match the training images' (1, 5, 6)"),
                          (["--test-images", str(tmp_path / "img")], "--test-labels: pass both"),
                          (["--train-images", str(broken)], "--dataset idx: " + str(broken))):
        with pytest.raises(SystemExit) as exc:
            _run(capsys, *flags, *extra, "--quiet", "--out", str(tmp_path / "bad"))
        assert exc.value.code == 2
        assert needle in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()


# ----------------------------------------------------------------------------- bench
def test_bench_with_an_unknown_name_lists_the_available_ones(capsys):
    available = sorted(p.stem[len("bench_"):] for p in (REPO / "benchmarks").glob("bench_*.py"))
    assert "optim" in available
    # a known name next to the unknown one: nothing may run
    assert cli.main(["bench", "optim", "nosuchbench"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    m = re.search(r"unknown benchmark\(s\) (.+); available: (.+)$", captured.err.strip())
    assert m and m.group(1) == "nosuchbench"
    assert m.group(2).split(", ") == available
