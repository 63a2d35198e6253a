"""Checkpoints: a resumed run continues bit for bit (dropout, shuffling, schedulers, callback
state); atomic writes with the umask's mode; pickle-free loading; every unreadable or mismatched
file refused with CheckpointError while the model, optimizer and the rest stay untouched."""
import copy
import hashlib
import io
import json
import os

import numpy as np
import pytest

import fusetrain
from fusetrain import callbacks, nn, optim
from fusetrain import random as frandom
from fusetrain.models import MLP
from fusetrain.optim import lr_scheduler
from fusetrain.train import CheckpointError, Trainer, checkpoint, load_checkpoint, load_weights, save_checkpoint
from testutils import classification_problem


def _problem(n=45, d=13, k=5, seed=0):
    return classification_problem(n, d, k, seed)


def _assert_same(a, b, where="checkpoint"):
    """Recursive exact equality: arrays by dtype, shape and every value (NaN equal to NaN)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a, key=str) == sorted(b, key=str), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b)):
            _assert_same(u, v, f"{where}/{i}")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, where
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), where
    elif isinstance(a, float) and a != a:
        assert isinstance(b, float) and b != b, where
    else:
        assert a == b and type(a) is type(b), (where, a, b)


def _rng(t):
    """The trainer's own random streams (shuffling, dropout), as a checkpoint stores them."""
    with frandom.use_stream(t.rng):
        return frandom.get_rng_state()


def _snapshot(t):
    """Everything a load may touch: model, optimizer, scheduler, callbacks, RNG, epoch, history."""
    return {"model": t.model.state_dict(), "optimizer": t.optimizer.state_dict(),
            "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in t.optimizer.param_groups],
            "scheduler": None if t.scheduler is None else copy.deepcopy(t.scheduler.state_dict()),
            "callbacks": [copy.deepcopy(cb.state_dict()) for cb in t.callbacks],
            "rng": _rng(t), "epoch": t.epoch,
            "history": copy.deepcopy(t.history.history), "history_epochs": list(t.history.epoch)}


# ------------------------------------------------------------------------------ bit-for-bit resume
def _run(folder, sched, init_seed, checkpoint_first=False):
    fusetrain.manual_seed(init_seed)
    model = MLP(13, (11, 7), 5, dropout=0.2)
    opt = optim.AdamW(model.parameters(), lr=0.05, weight_decay=1e-2)
    if sched == "exponential":
        scheduler = lr_scheduler.ExponentialLR(opt, 0.8)
    else:
        scheduler = lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    es = callbacks.EarlyStopping(patience=10, restore_best_weights=True)
    ema = callbacks.EMA(decay=0.9)
    mc = callbacks.ModelCheckpoint(folder / "ck-{epoch}.npz")
    # Either order: the Trainer runs checkpoints after the other callbacks, so the file holds
    # this epoch's EMA update and EarlyStopping counters.
    cbs = [mc, es, ema] if checkpoint_first else [es, ema, mc]
    return Trainer(model, opt, max_grad_norm=1.0, scheduler=scheduler, callbacks=cbs)


@pytest.mark.parametrize("sched,checkpoint_first", [("exponential", False), ("plateau", False), ("exponential", True)])
def test_resume_from_a_mid_run_checkpoint_is_bit_for_bit(tmp_path, sched, checkpoint_first):
    x, y = _problem()
    xv, yv = _problem(n=30, seed=1)
    kw = dict(epochs=6, batch_size=8, validation_data=(xv, yv), shuffle=True, verbose=0)
    (tmp_path / "full").mkdir()
    (tmp_path / "resumed").mkdir()
    full = _run(tmp_path / "full", sched, 0, checkpoint_first)
    h_full = full.fit(x, y, seed=7, **kw)
    rng_full = _rng(full)
    lrs = h_full.history["lr"]
    assert len(set(lrs[:4])) > 1 and len(set(lrs[4:])) > 1  # the schedule moves before and after the cut

    resumed = _run(tmp_path / "resumed", sched, 99, checkpoint_first)  # another init: everything must come from the file
    before = resumed.model.state_dict()
    assert resumed.load_checkpoint(tmp_path / "full" / "ck-4.npz") == 4
    assert not np.array_equal(resumed.model.state_dict()["0.weight"], before["0.weight"])
    assert resumed.history.history == {k: v[:4] for k, v in h_full.history.items()}
    h = resumed.fit(x, y, seed=12345, **kw)  # the seed is ignored: the checkpoint's RNG state wins

    assert h.epoch == h_full.epoch == list(range(6))
    _assert_same(h.history, h_full.history, "history")
    _assert_same(resumed.model.state_dict(), full.model.state_dict(), "model")
    _assert_same(resumed.optimizer.state_dict(), full.optimizer.state_dict(), "optimizer")
    _assert_same(resumed.scheduler.state_dict(), full.scheduler.state_dict(), "scheduler")
    for a, b in zip(resumed.callbacks, full.callbacks):
        _assert_same(a.state_dict(), b.state_dict(), type(a).__name__)
    _assert_same(_rng(resumed), rng_full, "rng")
    # the checkpoints the resumed run wrote equal the uninterrupted run's
    for e in (5, 6):
        _assert_same(checkpoint.read(tmp_path / "resumed" / f"ck-{e}.npz"),
                     checkpoint.read(tmp_path / "full" / f"ck-{e}.npz"), f"ck-{e}")


def test_resume_after_fit_returned_is_bit_for_bit(tmp_path):
    x, y = _problem()

    def make(seed):
        fusetrain.manual_seed(seed)
        model = MLP(13, (11, 7), 5, dropout=0.3)
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
        return Trainer(model, opt, scheduler=lr_scheduler.ExponentialLR(opt, 0.7))

    full = make(0)
    full.fit(x, y, epochs=4, batch_size=10, seed=3, verbose=0)
    part = make(0)
    part.fit(x, y, epochs=2, batch_size=10, seed=3, verbose=0)
    part.save_checkpoint(tmp_path / "ck.npz")
    fusetrain.manual_seed(5)  # the state of this process no longer matters
    resumed = make(1)
    assert resumed.load_checkpoint(tmp_path / "ck.npz") == 2
    resumed.fit(x, y, epochs=4, batch_size=10, verbose=0)
    _assert_same(resumed.history.history, full.history.history, "history")
    _assert_same(resumed.model.state_dict(), full.model.state_dict(), "model")
    _assert_same(resumed.optimizer.state_dict(), full.optimizer.state_dict(), "optimizer")
    _assert_same(resumed.scheduler.state_dict(), full.scheduler.state_dict(), "scheduler")
    np.testing.assert_array_equal(resumed.predict(x), full.predict(x))


# ------------------------------------------------------------------------------ writing
def _small_trainer(epochs=1, scheduler=True, cbs=True):
    x, y = _problem(n=20)
    model = MLP(13, (11, 7), 5)
    opt = optim.AdamW(model.parameters(), lr=1e-2)
    sched = lr_scheduler.ExponentialLR(opt, 0.9) if scheduler else None
    extra = [callbacks.EarlyStopping(monitor="loss", patience=5, restore_best_weights=True),
             callbacks.EMA(0.5, swap_on_end=False)] if cbs else []
    t = Trainer(model, opt, scheduler=sched, callbacks=extra)
    if epochs:
        t.fit(x, y, epochs=epochs, batch_size=10, verbose=0)
    return t


def _load_into_fresh(path):
    t = _small_trainer(epochs=0)
    t.load_checkpoint(path)
    return t


@pytest.mark.parametrize("exc", [OSError("No space left on device"), KeyboardInterrupt()],
                         ids=["OSError", "KeyboardInterrupt"])
def test_a_failed_write_keeps_the_previous_file_and_no_temp_file(tmp_path, monkeypatch, exc):
    path = tmp_path / "ck.npz"
    t = _small_trainer()
    t.save_checkpoint(path)
    saved = _snapshot(t)
    old_bytes = path.read_bytes()
    x, y = _problem(n=20)
    t.fit(x, y, epochs=2, batch_size=10, verbose=0)
    real_savez = np.savez

    def savez_then_fail(file, **arrays):
        buf = io.BytesIO()
        real_savez(buf, **arrays)
        file.write(buf.getvalue()[:buf.tell() // 2])  # half a file reached the disk
        raise exc

    monkeypatch.setattr(np, "savez", savez_then_fail)
    with pytest.raises(type(exc)):
        t.save_checkpoint(path)
    with pytest.raises(type(exc)):
        t.save_checkpoint(tmp_path / "new.npz")
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["ck.npz"]
    assert path.read_bytes() == old_bytes
    fresh = _load_into_fresh(path)
    _assert_same(_snapshot(fresh), saved, "reloaded")
    # a state that cannot be stored fails before anything is written
    t.metadata["tags"] = {"a", "b"}
    with pytest.raises(TypeError, match="set"):
        t.save_checkpoint(path)
    with pytest.raises(TypeError, match="object array"):
        save_checkpoint(tmp_path / "obj.npz", t.model, extra={"bad": np.array([1, "a"], dtype=object)})
    assert sorted(os.listdir(tmp_path)) == ["ck.npz"] and path.read_bytes() == old_bytes


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_checkpoint_files_get_the_mode_of_a_plain_open(tmp_path, umask):
    t = _small_trainer(epochs=0, cbs=False)
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain", "w"):
            pass
        t.save_checkpoint(tmp_path / "ck.npz")
        (tmp_path / "ck.npz").chmod(0o600)
        t.save_checkpoint(tmp_path / "ck.npz")  # an overwrite gets the mode of a new file too
    finally:
        os.umask(old)
    mode = (tmp_path / "ck.npz").stat().st_mode & 0o777
    assert mode == 0o666 & ~umask == (tmp_path / "plain").stat().st_mode & 0o777


def test_metadata_and_extra_round_trip(tmp_path):
    t = _small_trainer(cbs=False)
    t.metadata = {"run": "digits", "hidden": [11, 7], "lr": 0.1, "shape": (3, 4),
                  "nested": {"none": None, "flag": True, "big": 2 ** 40}, "ratio": 1 / 3}
    t.save_checkpoint(tmp_path / "ck.npz")
    expected = {"metadata": t.metadata, "trainer": {"nonfinite": "raise", "loss": "cross_entropy"}}
    _assert_same(checkpoint.read(tmp_path / "ck.npz")["extra"], expected, "extra")
    fresh = _small_trainer(epochs=0, cbs=False)
    info = load_checkpoint(tmp_path / "ck.npz", fresh.model, fresh.optimizer, fresh.scheduler)
    _assert_same(info["extra"], expected, "extra")
    assert info["epoch"] == 1 and info["history_epochs"] == [0]


def test_extra_with_int_and_str_keys_of_the_same_spelling(tmp_path):
    a, b = np.zeros(3, np.float32), np.arange(3.0)
    extra = {"ids": {0: a, "0": b, 1: "one"}, "pair": (a, [b])}
    save_checkpoint(tmp_path / "ck.npz", nn.Sequential(nn.Linear(2, 2)), extra=extra)
    _assert_same(checkpoint.read(tmp_path / "ck.npz")["extra"], extra, "extra")


def test_trainer_load_checkpoint_restores_metadata(tmp_path):
    t = _small_trainer(cbs=False)
    # keys that the trainer's own settings also use must survive untouched
    t.metadata = {"run": "digits", "hidden": [11, 7], "loss": "user value", "nonfinite": 3}
    t.save_checkpoint(tmp_path / "ck.npz")
    fresh = _small_trainer(epochs=0, cbs=False)
    fresh.load_checkpoint(tmp_path / "ck.npz")
    assert fresh.metadata == t.metadata


# ------------------------------------------------------------------------------ reading: no pickle
class _Payload:
    """Unpickling this runs os.mkdir(target): a loader that unpickles leaves the folder behind."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return os.mkdir, (self.target,)


def test_loading_never_unpickles(tmp_path):
    t = _small_trainer(cbs=False)
    t.save_checkpoint(tmp_path / "ck.npz")
    with np.load(tmp_path / "ck.npz") as f:
        entries = {k: f[k] for k in f.files}
    marker = tmp_path / "unpickled"
    entries["model/state/0.weight"] = np.array([_Payload(marker)], dtype=object)
    np.savez(tmp_path / "evil.npz", **entries)  # np.savez pickles object arrays
    snap = _snapshot(t)
    with pytest.raises(CheckpointError, match="cannot read the checkpoint"):
        t.load_checkpoint(tmp_path / "evil.npz")
    with pytest.raises(CheckpointError):
        load_weights(tmp_path / "evil.npz", t.model)
    assert not marker.exists()
    _assert_same(_snapshot(t), snap, "trainer")


# ------------------------------------------------------------------------------ reading: bad files
def _write_by_hand(path, body, arrays=None):
    """A .npz in the documented layout, written without fusetrain: the arrays, the JSON document
    under __meta__, and under __checksum__ the SHA-256 of the document and of each array's name,
    dtype, shape and bytes (sorted by name)."""
    arrays = dict(arrays or {})
    text = json.dumps(body)
    h = hashlib.sha256(text.encode("utf-8"))
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode("utf-8"))
        h.update(a.tobytes())
    np.savez(path, __meta__=np.array(text), __checksum__=np.array(h.hexdigest()), **arrays)


def test_hand_written_file_in_the_documented_layout_is_read(tmp_path):
    # validates _write_by_hand, so the refusals below differ from a good file in one way only
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    _write_by_hand(tmp_path / "ok.npz", {"format": "fusetrain-checkpoint", "version": 1, "x": {"__array__": "x"},
                                         "n": 3}, {"x": a})
    got = checkpoint.read(tmp_path / "ok.npz")
    assert got["n"] == 3 and got["format"] == "fusetrain-checkpoint"
    np.testing.assert_array_equal(got["x"], a)


def _bad_file(kind, good, folder):
    path = folder / f"{kind}.npz"
    data = good.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif kind == "truncated_tail":
        path.write_bytes(data[:-1])
    elif kind == "flipped_byte":
        with np.load(good) as f:
            raw = f["model/state/0.weight"].tobytes()
        at = data.index(raw) + len(raw) // 2
        path.write_bytes(data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1:])
    elif kind == "modified_array":
        with np.load(good) as f:
            entries = {k: f[k] for k in f.files}
        entries["optimizer/state/state/0/exp_avg"][3] += 1.0
        np.savez(path, **entries)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("epoch,loss\n0,1.5\n")
    elif kind == "npy":
        path = folder / "array.npy"
        np.save(path, np.arange(4.0))
    elif kind == "plain_npz":
        np.savez(path, weight=np.ones(3))
    elif kind == "other_format":
        _write_by_hand(path, {"format": "keras-weights", "version": 1})
    elif kind == "json_list":
        _write_by_hand(path, ["format", "fusetrain-checkpoint"])
    elif kind == "future_version":
        _write_by_hand(path, {"format": "fusetrain-checkpoint", "version": 2})
    return path


_BAD = {"truncated": "truncated, corrupt or not a .npz", "truncated_tail": "truncated, corrupt or not a .npz",
        "flipped_byte": "truncated, corrupt or not a .npz", "modified_array": "checksum mismatch",
        "empty": "truncated, corrupt or not a .npz", "text": "not a .npz checkpoint .it does not start with a zip",
        "npy": "not a fusetrain checkpoint", "plain_npz": "not a fusetrain checkpoint",
        "other_format": "not a fusetrain checkpoint.*keras-weights", "json_list": "not a fusetrain checkpoint",
        "future_version": "version 2 is not supported"}


@pytest.mark.parametrize("kind", sorted(_BAD))
def test_unreadable_files_are_refused_and_nothing_changes(tmp_path, kind):
    good = tmp_path / "good.npz"
    _small_trainer(epochs=2).save_checkpoint(good)
    bad = _bad_file(kind, good, tmp_path)
    t = _small_trainer(epochs=1)
    snap = _snapshot(t)
    with pytest.raises(CheckpointError, match=_BAD[kind]) as info:
        t.load_checkpoint(bad)
    assert isinstance(info.value, ValueError) and str(bad) in str(info.value)
    with pytest.raises(CheckpointError, match=_BAD[kind]):
        load_weights(bad, t.model)
    _assert_same(_snapshot(t), snap, "trainer")
    t.load_checkpoint(good)  # the trainer is still usable
    assert t.epoch == 2


def test_every_single_byte_corruption_is_refused_or_harmless(tmp_path):
    model = nn.Sequential(nn.Linear(2, 2))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model[0].weight.grad = np.ones((2, 2), np.float32)
    opt.step()
    save_checkpoint(tmp_path / "good.npz", model, opt, epoch=1)
    data = (tmp_path / "good.npz").read_bytes()
    reference = checkpoint.read(tmp_path / "good.npz")
    central = data.index(b"PK\x01\x02")  # the zip's central directory: every byte of it, and of the rest a sample
    positions = sorted(set(range(0, len(data), 11)) | set(range(central, len(data))))
    path = tmp_path / "bad.npz"
    path.write_bytes(data)
    refused = 0
    with open(path, "r+b", buffering=0) as fh:
        for at in positions:
            for bit in (0x01, 0x80):
                fh.seek(at)
                fh.write(bytes([data[at] ^ bit]))
                try:
                    got = checkpoint.read(path)
                except CheckpointError:
                    refused += 1
                    continue
                finally:
                    fh.seek(at)
                    fh.write(data[at:at + 1])
                _assert_same(got, reference, f"byte {at}")  # zip fields nobody reads: same content
    assert refused > 0.8 * 2 * len(positions)


@pytest.mark.parametrize("what", ["width", "depth", "optimizer_class", "param_groups", "scheduler_class",
                                  "no_scheduler", "no_optimizer_state"])
def test_a_checkpoint_of_another_setup_is_refused_and_nothing_changes(tmp_path, what):
    x, y = _problem(n=20)
    src = _small_trainer(epochs=2)
    src.save_checkpoint(tmp_path / "ck.npz")
    path = tmp_path / "ck.npz"
    model = MLP(13, (11, 6) if what == "width" else (11,) if what == "depth" else (11, 7), 5)
    params = list(model.parameters())
    if what == "optimizer_class":
        opt = optim.SGD(params, lr=0.1, momentum=0.9)
    elif what == "param_groups":
        opt = optim.AdamW([{"params": params[:3]}, {"params": params[3:], "weight_decay": 0.0}], lr=1e-2)
    else:
        opt = optim.AdamW(params, lr=1e-2)
    sched = None if what == "no_scheduler" else (
        lr_scheduler.StepLR(opt, 2) if what == "scheduler_class" else lr_scheduler.ExponentialLR(opt, 0.9))
    if what == "no_optimizer_state":
        save_checkpoint(path, src.model, epoch=2)
    t = Trainer(model, opt, scheduler=sched, callbacks=[callbacks.EMA(0.5, swap_on_end=False)])
    t.fit(x, y, epochs=1, batch_size=10, verbose=0)
    snap = _snapshot(t)
    expected = {"width": r"shape mismatch: 3\.weight: checkpoint \(7, 11\), model \(6, 11\)",
                "depth": r"not in the model: 4\.weight",
                "optimizer_class": "holds AdamW state, the optimizer is a SGD",
                "param_groups": "1 parameter groups, this one has 2",
                "scheduler_class": "holds ExponentialLR state, the scheduler is a StepLR",
                "no_scheduler": "holds scheduler state .*ExponentialLR.* but no scheduler was given",
                "no_optimizer_state": "holds no optimizer state"}[what]
    with pytest.raises(CheckpointError, match=expected):
        t.load_checkpoint(path)
    _assert_same(_snapshot(t), snap, "trainer")
    if what in ("width", "depth"):
        with pytest.raises(CheckpointError, match=expected):
            load_weights(path, t.model)
        _assert_same(_snapshot(t), snap, "trainer")


def test_load_weights_restores_parameters_and_buffers_only(tmp_path):
    src = _small_trainer(epochs=2)
    src.save_checkpoint(tmp_path / "full.npz")
    save_checkpoint(tmp_path / "model.npz", src.model, epoch=2)
    for name in ("full.npz", "model.npz"):
        t = _small_trainer(epochs=1)
        opt_before = t.optimizer.state_dict()
        epoch, rng = t.epoch, frandom.get_rng_state()
        load_weights(tmp_path / name, t.model)
        _assert_same(t.model.state_dict(), src.model.state_dict(), name)
        _assert_same(t.optimizer.state_dict(), opt_before, name)
        _assert_same(frandom.get_rng_state(), rng, name)
        assert t.epoch == epoch
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "missing.npz", t.model)


class _Counter(callbacks.Callback):
    """A user callback with resumable state whose load refuses negative counts."""

    def __init__(self, count):
        self.count = count

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        if state["count"] < 0:
            raise ValueError(f"count must be >= 0, got {state['count']}")
        self.count = state["count"]


class _Inject(callbacks.Callback):
    def __init__(self, values):
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = self.values[epoch]


def test_a_load_that_fails_midway_is_rolled_back(tmp_path):
    x, y = _problem(n=20)
    src = _small_trainer(epochs=0, cbs=False)
    src.callbacks = [callbacks.EarlyStopping(monitor="loss"), _Counter(-1)]
    src.fit(x, y, epochs=2, batch_size=10, verbose=0)
    src.save_checkpoint(tmp_path / "ck.npz")
    inject, es = _Inject([0.1, 0.2]), callbacks.EarlyStopping(monitor="score", patience=0)
    t = _small_trainer(epochs=0, cbs=False)
    t.callbacks = [inject, es, _Counter(5)]
    assert len(t.fit(x, y, epochs=2, batch_size=10, verbose=0).epoch) == 2 and es.best == 0.1
    snap = _snapshot(t)
    with pytest.raises(CheckpointError, match="rolled back.*count must be >= 0"):
        t.load_checkpoint(tmp_path / "ck.npz")  # EarlyStopping's state loads, then the counter's fails
    _assert_same(_snapshot(t), snap, "trainer")
    # nothing was resumed, so the next fit starts EarlyStopping afresh: with the stale best (0.1)
    # it would stop after epoch 2
    inject.values = [0.5, 0.4, 0.3]
    h = t.fit(x, y, epochs=3, batch_size=10, verbose=0)
    assert h.epoch == [0, 1, 2] and (es.best, es.best_epoch, es.stopped_epoch) == (0.3, 2, -1)


def _set(meta, *keys, value):
    """meta with the entry at keys replaced (a list index or dict key at each level)."""
    node = meta
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value


def _ema_size(meta):
    return meta["callbacks"][1]["state"]["average"].size


# (where, value or function of the checkpoint's content, the field the error must name)
BAD_FIELDS = {
    "epoch-str": (("epoch",), "x", "epoch must be a non-negative int, got 'x'"),
    "epoch-negative": (("epoch",), -1, "epoch must be a non-negative int, got -1"),
    "epoch-float": (("epoch",), 2.5, "epoch must be a non-negative int"),
    "epoch-bool": (("epoch",), True, "epoch must be a non-negative int"),
    "lr-str": (("optimizer", "state", "param_groups", 0, "lr"), "abc", r"param_groups\[0\]: lr must be a real number"),
    "lr-negative": (("optimizer", "state", "param_groups", 0, "lr"), -1, r"param_groups\[0\]: lr must be >= 0.0"),
    "betas-short": (("optimizer", "state", "param_groups", 0, "betas"), [0.9], "betas must be a pair"),
    "betas-range": (("optimizer", "state", "param_groups", 0, "betas"), [0.9, 1.5], r"betas\[1\] must be < 1.0"),
    "eps-nan": (("optimizer", "state", "param_groups", 0, "eps"), float("nan"), "eps must not be NaN"),
    "initial-lr": (("optimizer", "state", "param_groups", 0, "initial_lr"), -0.5, "initial_lr must be >= 0.0"),
    "step-negative": (("optimizer", "state", "state", 0, "step"), -3, r"state\[0\]\['step'\] must be a non-negative"),
    "step-str": (("optimizer", "state", "state", 0, "step"), "x", r"state\[0\]\['step'\] must be a non-negative"),
    "exp-avg-size": (("optimizer", "state", "state", 0, "exp_avg"), np.zeros(3, np.float32),
                     "state 'exp_avg' has 3 elements"),
    "exp-avg-str": (("optimizer", "state", "state", 0, "exp_avg"), "abc", r"state\[0\]\['exp_avg'\] must be an array"),
    "philox-negative": (("rng", "philox_offset"), "-4", "philox_offset must be a non-negative multiple of 4"),
    "philox-odd": (("rng", "philox_offset"), "6", "philox_offset must be a non-negative multiple of 4"),
    "seed-negative": (("rng", "seed"), "-1", r"seed must be in \[0, 2\*\*64\)"),
    "generator": (("rng", "generator"), '{"bit_generator": "MT19937"}', "invalid RNG state"),
    "ema-size": (("callbacks", 1, "state", "average"), lambda m: np.zeros(_ema_size(m) - 1, np.float32),
                 r"EMA state: 'average' must be None or a float array of the model's \d+ parameter values"),
    "ema-count": (("callbacks", 1, "state", "n_averaged"), -2, "'n_averaged' must be a non-negative int"),
    "early-wait": (("callbacks", 0, "state", "wait"), "x", "EarlyStopping state: 'wait' must be a non-negative int"),
    "early-weights": (("callbacks", 0, "state", "best_weights"), {"0.weight": np.zeros((2, 2), np.float32)},
                      "'best_weights' must be None or the MLP's state"),
    "scheduler-epoch": (("scheduler", "state", "last_epoch"), "x", r"scheduler state\['last_epoch'\] must be like"),
    "scheduler-lrs": (("scheduler", "state", "base_lrs"), [0.1, 0.2],
                      r"scheduler state\['base_lrs'\] must be a list of 1"),
    "scheduler-lr-negative": (("scheduler", "state", "base_lrs"), [-0.1],
                              r"scheduler state\['base_lrs'\] must be >= 0"),
    "history-values": (("history", "loss"), ["a", "b"], "history must be a dict of metric names to lists of numbers"),
    "history-length": (("history_epochs",), [0], r"history\['loss'\] must be a list of 1 values"),
    "model-entry": (("model", "state", "1.bias"), "abc", "not arrays: 1.bias"),
    "callbacks-type": (("callbacks",), {"a": 1}, "callbacks must be a list of dicts"),
}


@pytest.mark.parametrize("case", sorted(BAD_FIELDS))
def test_a_field_of_the_wrong_type_or_range_is_refused_and_nothing_changes(tmp_path, case):
    src = _small_trainer(epochs=2)
    src.save_checkpoint(tmp_path / "good.npz")
    meta = checkpoint.read(tmp_path / "good.npz")
    keys, value, message = BAD_FIELDS[case]
    _set(meta, *keys, value=value(meta) if callable(value) else value)
    meta = {k: v for k, v in meta.items() if k not in ("format", "version")}
    checkpoint.write(tmp_path / "bad.npz", meta)
    t = _small_trainer(epochs=1)
    snap = _snapshot(t)
    with pytest.raises(CheckpointError, match=message):
        t.load_checkpoint(tmp_path / "bad.npz")
    _assert_same(_snapshot(t), snap, "trainer")
    t.load_checkpoint(tmp_path / "good.npz")  # the same trainer takes the good file
    assert t.epoch == 2


def test_the_optimizer_and_scheduler_check_what_they_load():
    model = MLP(3, (4,), 2)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    sched = lr_scheduler.ExponentialLR(opt, 0.5)
    good = opt.state_dict()
    before = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
    bad = copy.deepcopy(good)
    bad["param_groups"][0]["lr"] = "abc"
    with pytest.raises(TypeError, match=r"param_groups\[0\]: lr must be a real number"):
        opt.load_state_dict(bad)
    assert {k: v for k, v in opt.param_groups[0].items() if k != "params"} == before
    bad = copy.deepcopy(good)
    bad["param_groups"][0]["betas"] = (0.9, 0.99)
    opt.load_state_dict(bad)
    assert opt.param_groups[0]["betas"] == (0.9, 0.99)
    sd = sched.state_dict()
    with pytest.raises(ValueError, match=r"scheduler state\['gamma'\] must be >= 0"):
        sched.load_state_dict(dict(sd, gamma=-1.0))
    with pytest.raises(ValueError, match=r"missing \['gamma'\]"):
        sched.load_state_dict({k: v for k, v in sd.items() if k != "gamma"})
    assert sched.state_dict() == sd


def _temps(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_save_removes_the_temporary_files_of_dead_processes_only(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    model = MLP(3, (4,), 2)
    path = tmp_path / "ck.npz"
    stale = [f".ck.npz.{dead_pid}.abc123.tmp", f".ck.npz.{dead_pid}.zz.tmp"]
    live = [f".ck.npz.{os.getpid()}.mine.tmp", ".ck.npz.1.init.tmp"]  # this process (another thread's save), init
    others = [".other.npz.%d.x.tmp" % dead_pid, ".ck.npz.notapid.tmp", "ck.npz.tmp"]  # not this target's, or foreign
    for name in stale + live + others:
        (tmp_path / name).write_bytes(b"partial")
    save_checkpoint(path, model, epoch=1)
    assert _temps(tmp_path) == sorted(live + others)
    assert load_checkpoint(path, model)["epoch"] == 1


_SAVER = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[2])
from fusetrain import nn, optim
from fusetrain.train import save_checkpoint
model = nn.Sequential(nn.Linear(1024, 1024), nn.Linear(1024, 512))
opt = optim.Adam(model.parameters())
i = 0
while True:
    model[0].bias.data[...] = i
    save_checkpoint(sys.argv[1], model, opt, epoch=i)
    if i == 0:
        print("ready", flush=True)
    i += 1
"""


def test_a_saver_killed_at_random_moments_leaves_a_loadable_file_and_no_lasting_temp(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    package = os.path.dirname(os.path.dirname(os.path.abspath(fusetrain.__file__)))
    path = tmp_path / "ck.npz"
    model = nn.Sequential(nn.Linear(1024, 1024), nn.Linear(1024, 512))
    opt = optim.Adam(model.parameters())
    rng = np.random.default_rng(0)
    for _ in range(5):
        child = subprocess.Popen([sys.executable, "-c", _SAVER, str(path), package], stdout=subprocess.PIPE,
                                 text=True)
        try:
            assert child.stdout.readline().strip() == "ready"
            # the dead savers' temporaries went with this one's first save; only its own may exist
            assert all(f".{child.pid}." in name for name in _temps(tmp_path)), _temps(tmp_path)
            time.sleep(rng.uniform(0.0, 0.2))  # a random moment, most likely inside a save
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdout.close()
        info = load_checkpoint(path, model, opt)  # whatever moment it was, the file is whole
        np.testing.assert_array_equal(model[0].bias.data, info["epoch"])
    save_checkpoint(path, model, opt, epoch=99)
    assert _temps(tmp_path) == []
    assert load_checkpoint(path, model, opt)["epoch"] == 99


def test_check_extra_refuses_before_anything_changes(tmp_path):
    src = _small_trainer(epochs=2)
    save_checkpoint(tmp_path / "ck.npz", src.model, src.optimizer, src.scheduler, callbacks=src.callbacks, epoch=2,
                    extra={"metadata": "not a dict"})
    t = _small_trainer(epochs=1)
    snap = _snapshot(t)

    def needs_metadata_dict(extra):
        return dict(extra["metadata"])
    with pytest.raises(CheckpointError, match="extra: ValueError"):
        load_checkpoint(tmp_path / "ck.npz", t.model, t.optimizer, t.scheduler, callbacks=t.callbacks,
                        check_extra=needs_metadata_dict)
    _assert_same(_snapshot(t), snap, "trainer")
    info = load_checkpoint(tmp_path / "ck.npz", t.model, t.optimizer, t.scheduler, callbacks=t.callbacks,
                           check_extra=lambda extra: extra["metadata"])
    assert info["extra"] == {"metadata": "not a dict"} and info["epoch"] == 2
