"""Trainer: fit/evaluate/predict against manual float64 computations, the non-finite policy,
schedulers, input rules, the ensemble, and the digits MLP with every trick reaching >= 97%."""
import math

import numpy as np
import pytest

import fusetrain
from fusetrain import callbacks, nn, optim
from fusetrain.models import MLP
from fusetrain.train import Ensemble, Trainer
from testutils import classification_problem


def _problem(n=97, d=13, k=5, seed=0):
    return classification_problem(n, d, k, seed)


def _trainer(d=13, k=5, dropout=0.0, lr=1e-2, **kw):
    model = MLP(d, (11, 7), k, dropout=dropout)
    return Trainer(model, optim.AdamW(model.parameters(), lr=lr), **kw)


def _xent64(logits, y):
    z = logits.astype(np.float64)
    z = z - z.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return -logp[np.arange(len(y)), y].mean()


def test_fit_evaluate_predict_shapes_and_values():
    x, y = _problem()
    t = _trainer()
    h = t.fit(x, y, epochs=3, batch_size=10, validation_data=(x[:29], y[:29]), verbose=0)
    assert h is t.history
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert all(len(v) == 3 for v in h.history.values()) and h.epoch == [0, 1, 2]
    out = t.predict(x, batch_size=7)
    assert out.shape == (97, 5) and out.dtype == np.float32
    res = t.evaluate(x, y, batch_size=13)
    assert res["loss"] == pytest.approx(_xent64(out, y), rel=1e-5)
    assert res["accuracy"] == pytest.approx(np.mean(out.argmax(1) == y))
    # the last epoch's validation entries are evaluate() on the validation data
    v = t.evaluate(x[:29], y[:29])
    assert h.history["val_loss"][-1] == pytest.approx(v["loss"], rel=1e-6)
    assert h.history["val_accuracy"][-1] == pytest.approx(v["accuracy"])
    # predict is eval mode and independent of the batch size; the model goes back to train mode
    np.testing.assert_allclose(t.predict(x, batch_size=97), out, rtol=1e-5, atol=1e-6)
    assert t.model.training


def test_training_loss_is_the_sample_weighted_mean_of_batch_losses():
    x, y = _problem(n=23)
    t = _trainer(lr=0.0)  # lr 0: weights frozen, so each batch loss is reproducible afterwards
    t.model.eval()  # batchnorm would update running stats; freeze the model in eval mode for a reference
    model = t.model
    w0 = [p.data.copy() for p in model.parameters()]
    h = t.fit(x, y, epochs=1, batch_size=10, shuffle=False, verbose=0)
    for p, w in zip(model.parameters(), w0):
        np.testing.assert_array_equal(p.data, w)
    model.train()
    losses = []
    for lo in range(0, 23, 10):
        out = model(x[lo:lo + 10]).copy()
        losses.append(_xent64(out, y[lo:lo + 10]) * len(out))
    assert h.history["loss"][0] == pytest.approx(sum(losses) / 23, rel=1e-5)


def test_one_step_matches_manual_forward_backward_update():
    x, y = _problem(n=8)
    model = nn.Sequential(nn.Linear(13, 5))
    w = model[0].weight.data.copy().astype(np.float64)
    b = model[0].bias.data.copy().astype(np.float64)
    t = Trainer(model, optim.SGD(model.parameters(), lr=0.1), metrics=())
    t.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    z = x.astype(np.float64) @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(8), y] -= 1
    g = p / 8
    np.testing.assert_allclose(model[0].weight.data, w - 0.1 * g.T @ x, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model[0].bias.data, b - 0.1 * g.sum(0), rtol=1e-5, atol=1e-6)


def test_max_grad_norm_is_folded_into_the_optimizer():
    # one step of a linear model: the gradient's norm and the clipped update, in float64
    x, y = _problem(n=8)
    model = nn.Sequential(nn.Linear(13, 5))
    w = model[0].weight.data.astype(np.float64)
    b = model[0].bias.data.astype(np.float64)
    t = Trainer(model, optim.SGD(model.parameters(), lr=0.1), metrics=(), max_grad_norm=0.05)
    assert t.optimizer.max_grad_norm == 0.05
    t.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    z = x.astype(np.float64) @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(8), y] -= 1
    gw, gb = p.T @ x / 8, p.sum(0) / 8
    norm = math.sqrt(np.sum(gw * gw) + np.sum(gb * gb))
    assert norm > 0.05  # the case clips
    assert t.optimizer.last_grad_norm == pytest.approx(norm, rel=1e-5)
    scale = 0.05 / (norm + 1e-6)
    np.testing.assert_allclose(model[0].weight.data, w - 0.1 * scale * gw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model[0].bias.data, b - 0.1 * scale * gb, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="max_grad_norm"):
        _trainer(max_grad_norm=-1)


def test_exponential_scheduler_steps_per_epoch_and_lr_is_logged():
    x, y = _problem()
    model = MLP(13, (9,), 5)
    opt = optim.SGD(model.parameters(), lr=0.1)
    t = Trainer(model, opt, scheduler=optim.lr_scheduler.ExponentialLR(opt, 0.5))
    h = t.fit(x, y, epochs=4, batch_size=50, verbose=0)
    np.testing.assert_allclose(h.history["lr"], [0.1 * 0.5 ** e for e in range(4)])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 4)


def test_plateau_scheduler_gets_the_validation_loss():
    x, y = _problem()
    model = MLP(13, (9,), 5)
    opt = optim.SGD(model.parameters(), lr=0.1)
    sched = optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    t = Trainer(model, opt, scheduler=sched)
    t.fit(x, y, epochs=3, batch_size=50, validation_data=(x, y), verbose=0)
    # ReduceLROnPlateau saw exactly the logged val_loss values
    hist = t.history.history
    best, bad, lr = math.inf, 0, 0.1
    for v in hist["val_loss"]:
        if v < best * (1 - 1e-4):
            best, bad = v, 0
        else:
            bad += 1
        if bad > 0:
            lr, bad = lr * 0.5, 0
    assert opt.param_groups[0]["lr"] == pytest.approx(lr)
    assert sched.best == pytest.approx(min(hist["val_loss"]))


class _NaNGradLoss(nn.CrossEntropyLoss):
    """Cross-entropy whose gradient has a NaN on the third call: a finite loss, a bad gradient."""

    calls = 0

    def backward(self, grad_output=1.0):
        g = super().backward(grad_output)
        type(self).calls += 1
        if type(self).calls == 3:
            g = g.copy()
            g[0, 0] = np.nan
        return g


@pytest.mark.parametrize("where", ["input", "gradient"])
def test_nonfinite_raise_names_epoch_and_batch_and_leaves_weights(where):
    x, y = _problem(n=40)
    x = x.copy()
    if where == "input":
        x[25, 3] = np.nan  # batch 3 of 4 (batch size 10, no shuffle) in epoch 1
        t = _trainer(max_grad_norm=1.0)
    else:
        _NaNGradLoss.calls = 0
        t = _trainer(max_grad_norm=1.0, loss=_NaNGradLoss())
    snapshots = {}

    class Record(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            snapshots[batch] = (self.model.state_dict(), self.trainer.optimizer.state_dict())

    t.callbacks.append(Record())
    match = "loss nan" if where == "input" else "gradient norm nan"
    with pytest.raises(FloatingPointError, match=match + r" at epoch 1, batch 3/4"):
        t.fit(x, y, epochs=2, batch_size=10, shuffle=False, verbose=0)
    state, opt_state = snapshots[1]
    now = t.model.state_dict()
    for k in state:
        np.testing.assert_array_equal(now[k], state[k], err_msg=k)
    for k, v in opt_state["state"][0].items():
        np.testing.assert_array_equal(t.optimizer.state_dict()["state"][0][k], v)
    assert all(np.isfinite(v).all() for v in now.values())


def test_nonfinite_skip_drops_the_update_and_counts_it():
    x, y = _problem(n=40)
    x = x.copy()
    x[25, 3] = np.inf
    t = _trainer(nonfinite="skip")
    snapshots = {}

    class Record(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            snapshots[batch] = (self.model.state_dict(), logs["skipped"])

    t.callbacks.append(Record())
    h = t.fit(x, y, epochs=1, batch_size=10, shuffle=False, verbose=0)
    assert h.history["skipped_steps"] == [1]
    assert [snapshots[b][1] for b in range(4)] == [False, False, True, False]
    before, after = snapshots[1][0], snapshots[2][0]
    for k in before:  # weights AND batchnorm running statistics unchanged by the bad batch
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    assert np.isfinite(h.history["loss"][0])
    assert t.optimizer.state_dict()["state"][0]["step"] == 3


def test_inputs_are_validated_and_float64_is_cast():
    x, y = _problem(n=20)
    t = _trainer()
    h = t.fit(x.astype(np.float64), y, epochs=1, batch_size=8, verbose=0)
    assert len(h.epoch) == 1
    with pytest.raises(TypeError, match="floating-point"):
        t.fit((x * 10).astype(np.int32), y, verbose=0)
    with pytest.raises(TypeError, match="integer class labels"):
        t.fit(x, y.astype(np.float32), verbose=0)
    with pytest.raises(ValueError, match="one entry per sample"):
        t.fit(x, y[:-1], verbose=0)
    with pytest.raises(ValueError, match="batch_size"):
        t.fit(x, y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="unknown loss"):
        _trainer(loss="hinge")
    with pytest.raises(ValueError, match="nonfinite"):
        _trainer(nonfinite="ignore")
    with pytest.raises(ValueError, match="device"):
        _trainer(device="tpu")


def test_custom_metric_and_mse_loss():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(31, 4)).astype(np.float32)
    target = (x @ rng.normal(size=(4, 2))).astype(np.float32)
    model = nn.Sequential(nn.Linear(4, 2))

    def mae(y_true, y_pred):
        return float(np.abs(y_true - y_pred).mean())

    t = Trainer(model, optim.Adam(model.parameters(), lr=0.05), loss="mse", metrics=(mae,))
    h = t.fit(x, target, epochs=30, batch_size=8, verbose=0)
    assert h.history["loss"][-1] < 0.5 * h.history["loss"][0]
    res = t.evaluate(x, target)
    pred = t.predict(x).astype(np.float64)
    assert res["loss"] == pytest.approx(((pred - target) ** 2).mean(), rel=1e-5)
    assert res["mae"] == pytest.approx(np.abs(pred - target).mean(), rel=1e-5)


def test_progress_bar_when_verbose(capsys):
    x, y = _problem(n=30)
    _trainer().fit(x, y, epochs=2, batch_size=7, verbose=1)
    err = capsys.readouterr().err
    assert "Epoch 1/2" in err and "Epoch 2/2" in err and "samples/s" in err and "5/5" in err
    _trainer().fit(x, y, epochs=1, batch_size=7, verbose=0)
    assert capsys.readouterr().err == ""


def test_seed_makes_fit_reproducible():
    x, y = _problem()
    outs = []
    for _ in range(2):
        fusetrain.manual_seed(3)
        t = _trainer(dropout=0.3)
        t.fit(x, y, epochs=2, batch_size=16, seed=11, verbose=0)
        outs.append(t.predict(x))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_ensemble_averages_softmax_probabilities():
    x, y = _problem()
    trainers = []
    for s in range(3):
        fusetrain.manual_seed(s)
        t = _trainer()
        t.fit(x, y, epochs=2, batch_size=16, verbose=0)
        trainers.append(t)
    ens = Ensemble(trainers)
    probs = ens.predict(x)
    ref = np.zeros((len(x), 5))
    for t in trainers:
        z = t.predict(x).astype(np.float64)
        e = np.exp(z - z.max(1, keepdims=True))
        ref += e / e.sum(1, keepdims=True) / 3
    np.testing.assert_allclose(probs, ref, rtol=1e-6, atol=1e-9)
    res = ens.evaluate(x, y)
    assert res["accuracy"] == pytest.approx(np.mean(ref.argmax(1) == y))
    assert res["loss"] == pytest.approx(-np.log(ref[np.arange(len(y)), y]).mean(), rel=1e-6)
    weighted = Ensemble([t.model for t in trainers], weights=[1, 0, 0]).predict(x)
    z = trainers[0].predict(x).astype(np.float64)
    np.testing.assert_allclose(weighted, np.exp(z) / np.exp(z).sum(1, keepdims=True), rtol=1e-6)
    with pytest.raises(ValueError, match="weights"):
        Ensemble(trainers, weights=[1, -1, 1])


def test_digits_mlp_with_every_trick_reaches_97_percent():
    pytest.importorskip("sklearn")
    from fusetrain.data import load_digits

    (x, y), (xt, yt) = load_digits(seed=0)
    fusetrain.manual_seed(0)
    model = MLP(64, (128, 128), 10, batchnorm=True, dropout=0.2)
    opt = optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    sched = optim.lr_scheduler.ExponentialLR(opt, 0.98)
    stop = callbacks.EarlyStopping(monitor="val_loss", patience=4, restore_best_weights=True)
    t = Trainer(model, opt, max_grad_norm=1.0, scheduler=sched, callbacks=[stop])
    h = t.fit(x, y, epochs=25, batch_size=64, validation_data=(xt, yt), seed=0, verbose=0)
    acc = t.evaluate(xt, yt)["accuracy"]
    assert acc >= 0.97, (acc, h.history["val_accuracy"])


def test_a_trainer_refuses_an_optimizer_of_another_models_parameters():
    model, other = nn.Linear(3, 2), nn.Linear(3, 2)
    with pytest.raises(ValueError, match="not parameters of the"):
        fusetrain.Trainer(model, optim.SGD(other.parameters(), lr=0.1))
