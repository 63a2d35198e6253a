"""What the callbacks tell a user and how they resume: EarlyStopping's one-line report and History
record, re-arming a stopped run resumed with more epochs, and EMA's warm-up of the decay against a
float64 recomputation of the average."""
import numpy as np
import pytest

from fusetrain import callbacks, optim
from fusetrain.models import MLP
from fusetrain.train import Trainer
from testutils import classification_problem


def _trainer(cbs, lr=0.05):
    model = MLP(13, (11, 7), 5, dropout=0.0)
    return Trainer(model, optim.AdamW(model.parameters(), lr=lr), callbacks=cbs)


class _Inject(callbacks.Callback):
    """Puts a scripted value under ``score`` into each epoch's logs, for the callbacks after it."""

    def __init__(self, values):
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = self.values[epoch]


class _Weights(callbacks.Callback):
    def __init__(self):
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(self.model.state_dict())


def _same(a, b):
    return sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)


# best at epoch 3 (0-based 2), then 4 epochs without improvement: patience 3 stops after epoch 6
_SCORES = [0.9, 0.7, 0.5, 0.6, 0.55, 0.8, 0.65, 0.7, 0.4, 0.3, 0.45, 0.5, 0.6, 0.7]


def test_early_stopping_says_when_it_stopped_and_which_weights_it_restored(capsys):
    x, y = classification_problem(20)
    rec = _Weights()
    es = callbacks.EarlyStopping(monitor="score", patience=3, restore_best_weights=True, verbose=1)
    t = _trainer([_Inject(_SCORES), rec, es])
    h = t.fit(x, y, epochs=10, batch_size=10, verbose=0)
    assert len(h.epoch) == 6
    assert (h.stopped_epoch, h.restored_epoch, h.best_epoch()) == (5, 2, 2)
    assert _same(t.model.state_dict(), rec.epochs[2])
    assert capsys.readouterr().out == ("EarlyStopping: stopped early after epoch 6: score had not improved for 3 "
                                       "epochs; restored the weights of epoch 3 (best score 0.5)\n")
    # ran out of epochs: no stop to report, the restore still is
    es.verbose = 0
    h = _trainer([_Inject(_SCORES), es]).fit(x, y, epochs=3, batch_size=10, verbose=0)
    assert (h.stopped_epoch, h.restored_epoch) == (None, 2)
    assert es.describe() == "EarlyStopping: restored the weights of epoch 3 (best score 0.5)"
    assert capsys.readouterr().out == ""


def test_a_stopped_run_resumed_with_more_epochs_trains_on(tmp_path, capsys):
    x, y = classification_problem(20)
    ck = tmp_path / "ck.npz"
    first = _Weights()
    es = callbacks.EarlyStopping(monitor="score", patience=3, restore_best_weights=True)
    t = _trainer([_Inject(_SCORES), first, es, callbacks.ModelCheckpoint(ck)])
    assert len(t.fit(x, y, epochs=14, batch_size=10, verbose=0).epoch) == 6

    rec = _Weights()
    es2 = callbacks.EarlyStopping(monitor="score", patience=3, restore_best_weights=True, verbose=1)
    t2 = _trainer([_Inject(_SCORES), rec, es2])
    assert t2.load_checkpoint(ck) == 6
    h = t2.fit(x, y, epochs=14, batch_size=10, verbose=0)
    # re-armed at epoch 7: epochs 9 and 10 improve (0.4, 0.3), then 11-13 do not: stop after 13
    assert len(h.epoch) == 13 and len(rec.epochs) == 7
    assert (h.stopped_epoch, h.restored_epoch, es2.best) == (12, 9, 0.3)
    assert _same(t2.model.state_dict(), rec.epochs[9 - 6])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("EarlyStopping: the resumed run had stopped after epoch 6; re-armed with patience 3")
    assert out[1] == ("EarlyStopping: stopped early after epoch 13: score had not improved for 3 epochs; "
                      "restored the weights of epoch 10 (best score 0.3)")

    # a resumed run that never improves again still restores the first run's best epoch
    es3 = callbacks.EarlyStopping(monitor="score", patience=2, restore_best_weights=True)
    t3 = _trainer([_Inject([9.0] * 14), es3])
    t3.load_checkpoint(ck)
    h = t3.fit(x, y, epochs=14, batch_size=10, verbose=0)
    assert len(h.epoch) == 8 and (h.stopped_epoch, h.restored_epoch) == (7, 2)
    assert _same(t3.model.state_dict(), first.epochs[2])


def _steps(model):
    return {k: np.array(p.data, dtype=np.float64) for k, p in model.named_parameters()}


class _Steps(callbacks.Callback):
    def __init__(self):
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(_steps(self.model))


@pytest.mark.parametrize("decay", [0.999, 0.95])
def test_ema_warms_its_decay_up(decay):
    x, y = classification_problem(40)
    rec = _Steps()
    ema = callbacks.EMA(decay=decay, recompute_bn=False)
    t = _trainer([rec, ema], lr=0.05)
    t.fit(x, y, epochs=8, batch_size=5, verbose=0)  # 64 steps, all warming up: (1+t)/(10+t) reaches 0.95 at t=171
    ref = dict(rec.steps[0])
    for t_, w in enumerate(rec.steps[1:], start=1):
        d = min(decay, (1.0 + t_) / (10.0 + t_))
        ref = {k: d * ref[k] + (1 - d) * w[k] for k in ref}
    now = _steps(t.model)
    for k in ref:
        np.testing.assert_allclose(now[k], ref[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert [ema.decay_at(i) for i in (0, 1, 8, 10000)] == [0.0, 2 / 11, 0.5, min(decay, 10001 / 10010)]
    # the average follows training: it is nearer the last weights than the first weights are
    first = rec.steps[0]
    assert all(np.abs(now[k] - rec.steps[-1][k]).mean() < np.abs(first[k] - rec.steps[-1][k]).mean()
               for k in ref if k.endswith("weight"))
