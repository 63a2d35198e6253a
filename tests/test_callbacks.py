"""Callbacks: hook order and logs, EarlyStopping against an independent statement of Keras's rule,
ModelCheckpoint, CSVLogger, LearningRateScheduler, and EMA / SWA weight averaging checked against
float64 recomputations of the average and of the batchnorm statistics."""
import csv
import math

import numpy as np
import pytest

from fusetrain import callbacks, nn, optim
from fusetrain.models import MLP
from fusetrain.train import CheckpointError, Trainer, load_checkpoint, load_weights
from testutils import classification_problem


def _problem(n=40, d=13, k=5, seed=0):
    return classification_problem(n, d, k, seed)


def _trainer(lr=1e-2, dropout=0.0, **kw):
    model = MLP(13, (11, 7), 5, dropout=dropout)
    return Trainer(model, optim.AdamW(model.parameters(), lr=lr), **kw)


def _params(model):
    return {k: np.array(p.data, dtype=np.float64) for k, p in model.named_parameters()}


def _assert_state_equal(actual, expected):
    assert sorted(actual) == sorted(expected)
    for k in expected:
        np.testing.assert_array_equal(actual[k], expected[k], err_msg=k)


def _forward64(model, state, x):
    """Training-mode forward of a Sequential of Linear / BatchNorm1d / ReLU in float64 from a state
    dict: the logits and, per BatchNorm, (batch mean, unbiased batch variance)."""
    z = np.asarray(x, dtype=np.float64)
    stats = []
    for name, layer in model.named_children():
        if isinstance(layer, nn.Linear):
            z = z @ state[name + ".weight"].astype(np.float64).T
            if name + ".bias" in state:
                z = z + state[name + ".bias"]
        elif isinstance(layer, nn.BatchNorm1d):
            mean, var = z.mean(0), z.var(0)
            stats.append((mean, z.var(0, ddof=1)))
            z = (z - mean) / np.sqrt(var + layer.eps) * state[name + ".weight"] + state[name + ".bias"]
        elif isinstance(layer, nn.ReLU):
            z = np.maximum(z, 0.0)
        else:
            raise TypeError(f"no float64 reference for {layer!r}")
    return z, stats


def _xent64(logits, y):
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return -logp[np.arange(len(y)), y].mean()


def _bn_reference(model, state, x, batch_size):
    """torch.optim.swa_utils.update_bn by hand: one pass in batches, each BatchNorm's running mean /
    var the plain average of the batch means / unbiased variances. A trailing one-sample batch has
    no variance and is left out, as Trainer.fit leaves it out of training."""
    n = len(x)
    if n % batch_size == 1 and n > batch_size:
        n -= 1
    per_batch = [_forward64(model, state, x[lo:min(n, lo + batch_size)])[1] for lo in range(0, n, batch_size)]
    return [(np.mean([b[i][0] for b in per_batch], axis=0), np.mean([b[i][1] for b in per_batch], axis=0))
            for i in range(len(per_batch[0]))], len(per_batch)


def _assert_bn_recomputed(model, averaged, x, batch_size):
    ref, nb = _bn_reference(model, averaged, x, batch_size)
    bns = [(name, m) for name, m in model.named_children() if isinstance(m, nn.BatchNorm1d)]
    assert len(bns) == len(ref) == 2
    for (name, m), (mean, var) in zip(bns, ref):
        np.testing.assert_allclose(m.running_mean, mean, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(m.running_var, var, rtol=1e-5, atol=1e-6, err_msg=name)
        assert int(m.num_batches_tracked) == nb
        assert m.momentum == 0.1


class _Record(callbacks.Callback):
    """The model's state_dict after each epoch and the parameters after each applied step."""

    def __init__(self):
        self.epochs, self.steps = [], []

    def on_train_batch_end(self, batch, logs=None):
        if not logs["skipped"]:
            self.steps.append(_params(self.model))

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(self.model.state_dict())


class _Inject(callbacks.Callback):
    """Puts a scripted value under ``key`` into each epoch's logs, for the callbacks after it."""

    def __init__(self, key, values):
        self.key, self.values = key, values

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]


# ------------------------------------------------------------------------------ hooks
def test_hooks_are_called_in_keras_order_with_the_right_logs():
    x, y = _problem(n=23)
    t = _trainer()
    events, before = [], {}
    model = t.model

    class Spy(callbacks.Callback):
        def on_train_begin(self, logs=None):
            events.append(("train_begin",))

        def on_epoch_begin(self, epoch, logs=None):
            events.append(("epoch_begin", epoch))

        def on_train_batch_begin(self, batch, logs=None):
            events.append(("batch_begin", batch, logs["size"]))
            before[batch] = self.model.state_dict()

        def on_train_batch_end(self, batch, logs=None):
            events.append(("batch_end", batch, logs["size"]))
            # the logged loss is the loss of the weights before this step on this batch (no shuffle)
            lo = batch * 10
            logits, _ = _forward64(model, before[batch], x[lo:lo + logs["size"]])
            assert logs["loss"] == pytest.approx(_xent64(logits, y[lo:lo + logs["size"]]), rel=1e-5)
            assert logs["batch"] == batch and logs["skipped"] is False

        def on_epoch_end(self, epoch, logs=None):
            events.append(("epoch_end", epoch, sorted(logs)))

        def on_train_end(self, logs=None):
            events.append(("train_end",))

    spy, late = Spy(), _Record()
    t.callbacks.append(spy)
    h = t.fit(x, y, epochs=2, batch_size=10, validation_data=(x, y), shuffle=False, verbose=0, callbacks=[late])
    assert spy.trainer is t and spy.model is model and late.trainer is t
    keys = sorted(["loss", "accuracy", "val_loss", "val_accuracy", "lr"])
    expected = [("train_begin",)]
    for e in range(2):
        expected.append(("epoch_begin", e))
        for b, size in enumerate((10, 10, 3)):
            expected += [("batch_begin", b, size), ("batch_end", b, size)]
        expected.append(("epoch_end", e, keys))
    expected.append(("train_end",))
    assert events == expected
    assert len(late.epochs) == 2  # fit(callbacks=...) run too, after the Trainer's own
    assert callbacks.Callback().state_dict() == {}
    assert len(h.epoch) == 2


def test_model_stop_training_stops_after_the_current_batch():
    x, y = _problem(n=40)
    t = _trainer()
    seen = []

    class StopAtBatch1(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(batch)
            if batch == 1:
                self.model.stop_training = True  # Keras's spelling

    t.callbacks.append(StopAtBatch1())
    h = t.fit(x, y, epochs=5, batch_size=10, verbose=0)
    assert seen == [0, 1] and len(h.epoch) == 1
    assert t.optimizer.state_dict()["state"][0]["step"] == 2


# ------------------------------------------------------------------------------ EarlyStopping
def _expected_stop(values, min_delta, patience, sign):
    """Independent statement of the rule: stop at the first epoch that completes a run of
    max(patience, 1) epochs none of which beat the best so far by more than min_delta."""
    best, best_epoch, bad = math.inf, -1, 0
    for e, v in enumerate(values):
        if sign * v < best - min_delta:
            best, best_epoch, bad = sign * v, e, 0
        else:
            bad += 1
            if bad >= max(patience, 1):
                return e, best_epoch
    return None, best_epoch


_SCRIPT = [1.0, 0.8, 0.795, 0.7, 0.72, 0.69, 0.71, 0.73, 0.75, 0.6, 0.9, 0.95]


@pytest.mark.parametrize("patience, min_delta", [(0, 0.0), (2, 0.0), (2, 0.02), (4, 0.02), (20, 0.0)])
@pytest.mark.parametrize("monitor, mode, sign", [("val_loss", "auto", 1), ("val_accuracy", "auto", -1),
                                                 ("score", "max", -1), ("score", "min", 1)])
def test_early_stopping_rule_and_best_weights(monitor, mode, sign, patience, min_delta):
    x, y = _problem(n=20)
    values = [sign * v for v in _SCRIPT]
    stop, best = _expected_stop(values, min_delta, patience, sign)
    assert best != (len(values) - 1 if stop is None else stop)  # restoring must be observable
    rec = _Record()
    es = callbacks.EarlyStopping(monitor=monitor, min_delta=min_delta, patience=patience, mode=mode,
                                 restore_best_weights=True)
    t = _trainer(lr=0.05, callbacks=[rec, _Inject(monitor, values), es])
    h = t.fit(x, y, epochs=len(values), batch_size=10, verbose=0)
    ran = len(values) if stop is None else stop + 1
    assert len(h.epoch) == ran == len(rec.epochs)
    assert es.stopped_epoch == (-1 if stop is None else stop)
    assert es.best == values[best] and es.best_epoch == best
    # the best epoch's parameters AND buffers are back, whether training stopped or ran out
    _assert_state_equal(t.model.state_dict(), rec.epochs[best])


def test_early_stopping_without_restore_keeps_the_last_weights():
    x, y = _problem(n=20)
    rec = _Record()
    es = callbacks.EarlyStopping(monitor="score", patience=0)
    t = _trainer(callbacks=[rec, _Inject("score", [3.0, 2.0, 2.5, 1.0]), es])
    h = t.fit(x, y, epochs=4, batch_size=10, verbose=0)
    assert len(h.epoch) == 3 and es.stopped_epoch == 2 and es.best_weights is None
    _assert_state_equal(t.model.state_dict(), rec.epochs[-1])


def test_early_stopping_resets_when_training_begins():
    x, y = _problem(n=20)
    inject, rec = _Inject("score", [0.5, 0.4, 0.45]), _Record()
    es = callbacks.EarlyStopping(monitor="score", patience=0, restore_best_weights=True)
    t = _trainer(callbacks=[rec, inject, es])
    assert len(t.fit(x, y, epochs=3, batch_size=10, verbose=0).epoch) == 3
    assert (es.best, es.best_epoch, es.stopped_epoch) == (0.4, 1, 2)
    # every value of the second fit is worse than the first fit's best: carried-over state
    # would stop it after epoch 1 and restore the first fit's weights
    inject.values, rec.epochs = [0.9, 0.8, 0.85, 0.7], []
    h = t.fit(x, y, epochs=4, batch_size=10, verbose=0)
    assert len(h.epoch) == 3
    assert (es.best, es.best_epoch, es.stopped_epoch, es.wait) == (0.8, 1, 2, 1)
    _assert_state_equal(t.model.state_dict(), rec.epochs[1])


def test_early_stopping_warns_listing_the_available_metrics():
    x, y = _problem(n=20)
    rec = _Record()
    es = callbacks.EarlyStopping(monitor="val_los", patience=0, restore_best_weights=True)
    t = _trainer(callbacks=[rec, es])
    with pytest.warns(RuntimeWarning, match="'val_los'.*not available") as caught:
        h = t.fit(x, y, epochs=3, batch_size=10, validation_data=(x, y), verbose=0)
    assert len(h.epoch) == 3 and len(caught) == 3  # never stops on a missing metric
    listed = str(caught[0].message).split("available metrics: ")[1].split(", ")
    assert listed == sorted(h.history) == sorted(["loss", "accuracy", "val_loss", "val_accuracy", "lr"])
    _assert_state_equal(t.model.state_dict(), rec.epochs[-1])


def test_early_stopping_validates_its_arguments():
    with pytest.raises(ValueError, match="patience"):
        callbacks.EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="mode"):
        callbacks.EarlyStopping(mode="up")
    with pytest.raises(ValueError, match="min_delta"):
        callbacks.EarlyStopping(min_delta=math.nan)


# ------------------------------------------------------------------------------ ModelCheckpoint
def test_model_checkpoint_every_epoch_with_a_formatted_path(tmp_path):
    x, y = _problem(n=20)
    rec = _Record()
    t = _trainer(callbacks=[rec, callbacks.ModelCheckpoint(tmp_path / "ck-{epoch:02d}-{loss:.4f}.npz")])
    h = t.fit(x, y, epochs=3, batch_size=10, verbose=0)
    names = [f"ck-{e + 1:02d}-{h.history['loss'][e]:.4f}.npz" for e in range(3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    for e, name in enumerate(names):
        fresh = MLP(13, (11, 7), 5)
        opt = optim.AdamW(fresh.parameters(), lr=1e-2)
        info = load_checkpoint(tmp_path / name, fresh, opt)
        assert info["epoch"] == e + 1
        assert info["history"]["loss"] == h.history["loss"][:e + 1]
        _assert_state_equal(fresh.state_dict(), rec.epochs[e])
        assert opt.state_dict()["state"][0]["step"] == 2 * (e + 1)
    with pytest.raises(ValueError, match="cannot be formatted.*val_loss"):
        _trainer(callbacks=[callbacks.ModelCheckpoint(tmp_path / "{val_loss}.npz")]).fit(x, y, verbose=0)


def test_model_checkpoint_save_best_only_and_weights_only(tmp_path):
    x, y = _problem(n=30)
    xv, yv = _problem(n=20, seed=1)
    rec = _Record()
    every = callbacks.ModelCheckpoint(tmp_path / "best-{epoch}.npz", save_best_only=True)
    last_best = callbacks.ModelCheckpoint(tmp_path / "best.npz", save_best_only=True, save_weights_only=True)
    t = _trainer(lr=0.3, callbacks=[rec, every, last_best])
    h = t.fit(x, y, epochs=8, batch_size=10, validation_data=(xv, yv), verbose=0)
    val = h.history["val_loss"]
    improved = [e for e in range(8) if val[e] < min(val[:e], default=math.inf)]
    assert improved != list(range(8))  # lr 0.3 overshoots: some epochs do not improve
    written = sorted(p.name for p in tmp_path.iterdir() if p.name != "best.npz")
    assert written == sorted(f"best-{e + 1}.npz" for e in improved)
    best = int(np.argmin(val))
    fresh = MLP(13, (11, 7), 5)
    load_weights(tmp_path / "best.npz", fresh)
    _assert_state_equal(fresh.state_dict(), rec.epochs[best])
    # weights only: no optimizer state in the file, so a full load is refused
    opt = optim.AdamW(fresh.parameters(), lr=1e-2)
    with pytest.raises(CheckpointError, match="no optimizer state"):
        load_checkpoint(tmp_path / "best.npz", fresh, opt)


# ------------------------------------------------------------------------------ CSVLogger
def _read_csv(path, sep=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=sep))


def test_csv_logger_writes_every_epoch_exactly(tmp_path):
    x, y = _problem(n=20)
    path = tmp_path / "log.csv"
    t = _trainer(callbacks=[callbacks.CSVLogger(path, separator=";")])
    h = t.fit(x, y, epochs=3, batch_size=10, validation_data=(x, y), verbose=0)
    rows = _read_csv(path, ";")
    keys = sorted(h.history)
    assert rows[0] == ["epoch"] + keys and len(rows) == 4
    for e, row in enumerate(rows[1:]):
        assert int(row[0]) == e
        assert [float(v) for v in row[1:]] == [h.history[k][e] for k in keys]  # repr: exact round trip
    # a second fit without validation rewrites the file with its own header
    h = t.fit(x, y, epochs=2, batch_size=10, verbose=0)
    rows = _read_csv(path, ";")
    assert rows[0] == ["epoch"] + sorted(h.history) == ["epoch", "accuracy", "loss", "lr"] and len(rows) == 3
    assert [[float(v) for v in r[1:]] for r in rows[1:]] == [[h.history[k][e] for k in sorted(h.history)]
                                                            for e in range(2)]


def test_csv_logger_append_continues_a_resumed_run(tmp_path):
    x, y = _problem(n=20)
    path, ck = tmp_path / "log.csv", tmp_path / "ck.npz"
    t = _trainer(callbacks=[callbacks.CSVLogger(path)])
    t.fit(x, y, epochs=2, batch_size=10, verbose=0)
    t.save_checkpoint(ck)
    t2 = _trainer(callbacks=[callbacks.CSVLogger(path, append=True)])
    t2.load_checkpoint(ck)
    h = t2.fit(x, y, epochs=3, batch_size=10, verbose=0)
    rows = _read_csv(path)
    keys = sorted(h.history)
    assert rows[0] == ["epoch"] + keys and len(rows) == 4  # one header, three epochs
    assert [int(r[0]) for r in rows[1:]] == [0, 1, 2]
    for e, row in enumerate(rows[1:]):
        assert [float(v) for v in row[1:]] == [h.history[k][e] for k in keys]


# ------------------------------------------------------------------------------ LearningRateScheduler
def test_learning_rate_scheduler_sets_the_lr_each_epoch():
    x, y = _problem(n=20)
    calls = []

    def schedule(epoch, lr):
        calls.append((epoch, lr))
        return 0.0 if epoch == 1 else 0.05 * 0.5 ** epoch

    model = MLP(13, (11, 7), 5)
    opt = optim.SGD([{"params": list(model.parameters())[:2]}, {"params": list(model.parameters())[2:]}], lr=0.3)
    rec = _Record()
    t = Trainer(model, opt, callbacks=[callbacks.LearningRateScheduler(schedule), rec])
    h = t.fit(x, y, epochs=4, batch_size=10, verbose=0)
    expected = [0.05, 0.0, 0.0125, 0.00625]
    assert h.history["lr"] == expected
    assert calls == [(0, 0.3), (1, 0.05), (2, 0.0), (3, 0.0125)]
    assert [g["lr"] for g in opt.param_groups] == [expected[-1]] * 2
    # lr 0 in epoch 1 (every group): parameters frozen that epoch, moving in the others
    params = [{k: v for k, v in s.items() if k in dict(model.named_parameters())} for s in rec.epochs]
    _assert_state_equal(params[1], params[0])
    for a, b in ((params[1], params[2]), (params[2], params[3])):
        assert all(not np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(TypeError, match="callable"):
        callbacks.LearningRateScheduler(0.1)
    bad = Trainer(model, opt, callbacks=[callbacks.LearningRateScheduler(lambda e, lr: -1.0)])
    with pytest.raises(ValueError, match="finite lr >= 0"):
        bad.fit(x, y, verbose=0)


# ------------------------------------------------------------------------------ weight averaging
@pytest.mark.parametrize("n", [40, 41])  # 41: training and the BN pass leave the last sample out
def test_ema_average_and_batchnorm_recalibration(n):
    x, y = _problem(n=n)
    rec = _Record()
    ema = callbacks.EMA(decay=0.9, warmup=False)
    t = _trainer(lr=0.05, callbacks=[rec, ema])
    t.fit(x, y, epochs=3, batch_size=10, verbose=0)
    assert len(rec.steps) == 12 == ema.n_averaged
    ref = dict(rec.steps[0])
    for w in rec.steps[1:]:
        ref = {k: 0.9 * ref[k] + 0.1 * w[k] for k in ref}
    now = _params(t.model)
    for k in ref:
        np.testing.assert_allclose(now[k], ref[k], rtol=1e-5, atol=1e-6, err_msg=k)
        assert not np.allclose(now[k], rec.steps[-1][k], rtol=1e-3)  # the average is not the last step
    # the raw weights are kept, the averaged ones get their own batchnorm statistics
    _assert_state_equal({k: v for k, v in ema.raw_state.items() if k in now}, rec.steps[-1])
    averaged = t.model.state_dict()
    _assert_bn_recomputed(t.model, averaged, x, 10)
    assert not np.allclose(averaged["1.running_var"], ema.raw_state["1.running_var"], rtol=1e-3)
    assert t.model.training


def test_ema_skips_non_finite_steps_and_can_swap_by_hand():
    x, y = _problem(n=40)
    x = x.copy()
    x[25, 3] = np.inf  # batch 2 of every epoch (no shuffle) is skipped
    rec = _Record()
    ema = callbacks.EMA(decay=0.8, recompute_bn=False, swap_on_end=False, warmup=False)
    t = _trainer(lr=0.05, callbacks=[rec, ema], nonfinite="skip")
    t.fit(x, y, epochs=2, batch_size=10, shuffle=False, verbose=0)
    assert len(rec.steps) == ema.n_averaged == 6
    last = t.model.state_dict()
    _assert_state_equal({k: v for k, v in last.items() if k in rec.steps[-1]}, rec.steps[-1])  # not swapped
    ref = dict(rec.steps[0])
    for w in rec.steps[1:]:
        ref = {k: 0.8 * ref[k] + 0.2 * w[k] for k in ref}
    ema.swap_in()
    now = t.model.state_dict()
    for k in ref:
        np.testing.assert_allclose(now[k], ref[k], rtol=1e-5, atol=1e-6, err_msg=k)
    for k in ("1.running_mean", "1.running_var", "4.running_mean", "4.running_var"):
        np.testing.assert_array_equal(now[k], last[k])  # recompute_bn=False keeps the statistics
    with pytest.raises(ValueError, match="decay"):
        callbacks.EMA(decay=1.5)


def test_swa_average_lr_and_batchnorm_recalibration():
    x, y = _problem(n=30)
    rec = _Record()
    swa = callbacks.SWA(start_epoch=1, swa_lr=0.05)
    t = _trainer(lr=0.01, callbacks=[rec, swa])
    h = t.fit(x, y, epochs=4, batch_size=10, verbose=0)
    assert h.history["lr"] == [0.01, 0.05, 0.05, 0.05]
    assert swa.n_averaged == 3
    names = dict(t.model.named_parameters())
    ref = {k: np.mean([s[k].astype(np.float64) for s in rec.epochs[1:]], axis=0) for k in names}
    now = _params(t.model)
    for k in ref:
        np.testing.assert_allclose(now[k], ref[k], rtol=1e-5, atol=1e-6, err_msg=k)
    _assert_state_equal({k: v for k, v in swa.raw_state.items()}, rec.epochs[-1])
    _assert_bn_recomputed(t.model, t.model.state_dict(), x, 10)


def test_swa_that_never_started_warns_and_changes_nothing():
    x, y = _problem(n=20)
    rec = _Record()
    t = _trainer(callbacks=[rec, callbacks.SWA(start_epoch=5)])
    with pytest.warns(RuntimeWarning, match="start_epoch=5"):
        t.fit(x, y, epochs=2, batch_size=10, verbose=0)
    _assert_state_equal(t.model.state_dict(), rec.epochs[-1])
    with pytest.raises(ValueError, match="start_epoch"):
        callbacks.SWA(start_epoch=-1)


@pytest.mark.parametrize("n, batch_size", [(50, 16), (49, 16), (7, 16)])
def test_recompute_batchnorm_matches_a_manual_pass(n, batch_size):
    x, _ = _problem(n=n, seed=3)
    model = MLP(13, (11, 7), 5)
    rng = np.random.default_rng(5)
    state = model.state_dict()
    for k in state:
        if k.endswith("num_batches_tracked"):
            state[k] = np.array(9, dtype=np.int64)
        elif k.endswith("running_var"):
            state[k] = rng.uniform(3, 4, size=state[k].shape).astype(np.float32)
        else:
            state[k] = rng.normal(size=state[k].shape).astype(np.float32)
    model.load_state_dict(state)
    model.eval()
    assert callbacks.recompute_batchnorm(model, x, batch_size=batch_size) == 2
    assert not model.training
    after = model.state_dict()
    for k, _ in model.named_parameters():
        np.testing.assert_array_equal(after[k], state[k])
    _assert_bn_recomputed(model, state, x, batch_size)
    assert callbacks.recompute_batchnorm(nn.Sequential(nn.Linear(13, 5)), x) == 0
    # one sample has no batch variance: refused before the statistics are reset
    with pytest.raises(ValueError, match="at least 2 samples"):
        callbacks.recompute_batchnorm(model, x[:1])
    _assert_state_equal(model.state_dict(), after)


def test_outputs_go_into_new_folders(tmp_path):
    # A new run folder is created as needed (as Keras's ModelCheckpoint does): checkpoint, CSV log,
    # history CSV and plot, each into a folder that does not exist yet.
    x, y = _problem()
    out = tmp_path / "runs" / "a"
    t = _trainer(callbacks=[callbacks.ModelCheckpoint(out / "ck" / "model.npz"),
                            callbacks.CSVLogger(str(out / "logs" / "log.csv"))])
    h = t.fit(x, y, epochs=2, batch_size=8, verbose=0)
    h.to_csv(out / "csv" / "history.csv")
    fresh = _trainer()
    assert fresh.load_checkpoint(out / "ck" / "model.npz") == 2
    _assert_state_equal(fresh.model.state_dict(), t.model.state_dict())
    rows = (out / "csv" / "history.csv").read_text().splitlines()
    assert len(rows) == 3 and float(rows[2].split(",")[1]) == h.history["loss"][1]
    assert len((out / "logs" / "log.csv").read_text().splitlines()) == 3
    pytest.importorskip("matplotlib")
    h.plot(out / "png" / "curves.png")
    assert (out / "png" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
