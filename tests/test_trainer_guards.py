"""The Trainer's guards: every label checked before any step, a diverged run that cannot train on
is reported instead of returning a NaN model, batchnorm recalibration of averaged weights that
skips non-finite data, and fits in two threads that keep their own random streams."""
import threading

import numpy as np
import pytest

import fusetrain
from fusetrain import callbacks, nn, optim
from testutils import classification_problem


def _bn_mlp(d=6, classes=3, dropout=0.0):
    layers = [nn.Linear(d, 16), nn.BatchNorm1d(16), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(16, classes))


@pytest.mark.parametrize("where", ["last training sample", "validation data"])
def test_a_bad_label_anywhere_is_refused_before_any_step(where):
    x, y = classification_problem(n=64, d=6, k=3, seed=0)
    xv, yv = x[:20].copy(), y[:20].copy()
    if where == "last training sample":
        y = y.copy()
        y[-1] = 3
    else:
        yv[7] = -1
    model = _bn_mlp()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    trainer = fusetrain.Trainer(model, optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    name = "y" if where == "last training sample" else "validation_data\\[1\\]"
    with pytest.raises(ValueError, match=f"{name} holds labels outside \\[0, 3\\)"):
        trainer.fit(x, y, epochs=1, batch_size=16, validation_data=(xv, yv), verbose=0)
    for k, v in model.state_dict().items():
        assert np.array_equal(v, before[k]), f"{k} changed although fit refused the labels"


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(epochs=1.5), TypeError, "epochs must be a non-negative int, got 1.5"),
    (dict(epochs=-1), ValueError, "epochs must be a non-negative int, got -1"),
    (dict(batch_size=0), ValueError, "batch_size must be a positive int, got 0"),
    (dict(batch_size=True), TypeError, "batch_size must be a positive int, got True"),
])
def test_fit_refuses_a_bad_epoch_count_or_batch_size_and_changes_nothing(kwargs, exc, message):
    x, y = classification_problem(n=32, d=6, k=3, seed=0)
    model = _bn_mlp()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    trainer = fusetrain.Trainer(model, optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(exc, match=message.replace("[", "\\[")):
        trainer.fit(x, y, **{"epochs": 1, "batch_size": 8, "verbose": 0, **kwargs})
    for k, v in model.state_dict().items():
        assert np.array_equal(v, before[k]), f"{k} changed although fit refused its arguments"


def test_validation_samples_of_another_shape_are_refused_before_any_step():
    x, y = classification_problem(n=32, d=6, k=3, seed=0)
    model = _bn_mlp()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    trainer = fusetrain.Trainer(model, optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match=r"validation_data\[0\] must hold samples of shape \(6,\) as x does, "
                                         r"got \(5,\); nothing was trained"):
        trainer.fit(x, y, epochs=1, batch_size=8, validation_data=(x[:, :5], y), verbose=0)
    for k, v in model.state_dict().items():
        assert np.array_equal(v, before[k]), f"{k} changed although fit refused the validation data"


@pytest.mark.parametrize("batch_size, exc", [(0, ValueError), (-1, ValueError), (2.5, TypeError)])
def test_evaluate_and_predict_refuse_a_bad_batch_size(batch_size, exc):
    x, y = classification_problem(n=20, d=6, k=3, seed=0)
    model = _bn_mlp()
    trainer = fusetrain.Trainer(model, optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(exc, match=f"batch_size must be a positive int, got {batch_size}"):
        trainer.evaluate(x, y, batch_size=batch_size)
    with pytest.raises(exc, match=f"batch_size must be a positive int, got {batch_size}"):
        trainer.predict(x, batch_size=batch_size)


def test_a_step_that_overflows_batchnorm_statistics_is_skipped_and_divergence_is_reported():
    x, y = classification_problem(n=64, d=6, k=3, seed=1)
    x = x * 1e20  # finite inputs whose batch variance overflows float32
    model = _bn_mlp()
    trainer = fusetrain.Trainer(model, optim.SGD(model.parameters(), lr=0.1), nonfinite="skip")
    bn = model[1]
    with pytest.raises(FloatingPointError, match="every batch of epoch 1 was non-finite"):
        trainer.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert np.isfinite(bn.running_var).all() and np.isfinite(bn.running_mean).all()
    assert np.array_equal(bn.running_var, np.ones(16, np.float32))  # every update was rolled back


def test_huge_steps_that_diverge_end_the_fit_with_an_error():
    x, y = classification_problem(n=128, d=6, k=3, seed=2)
    model = _bn_mlp()
    trainer = fusetrain.Trainer(model, optim.SGD(model.parameters(), lr=1e30), nonfinite="skip")
    with pytest.raises(FloatingPointError, match="non-finite"):
        trainer.fit(x, y, epochs=5, batch_size=16, verbose=0)
    for name, b in model.named_buffers():
        assert np.isfinite(b).all(), f"{name} holds non-finite values"


@pytest.mark.parametrize("kind", ["EMA", "SWA"])
def test_weight_averaging_recalibrates_batchnorm_without_the_non_finite_samples(kind):
    x, y = classification_problem(n=96, d=6, k=3, seed=3)
    x = x.copy()
    x[5, 2] = np.nan  # one NaN sample: its batch is skipped in training and left out of recalibration
    model = _bn_mlp()
    avg = callbacks.EMA(0.9) if kind == "EMA" else callbacks.SWA(start_epoch=0)
    trainer = fusetrain.Trainer(model, optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
                                callbacks=[avg], nonfinite="skip")
    trainer.fit(x, y, epochs=3, batch_size=16, verbose=0, shuffle=False)
    bn = model[1]
    assert np.isfinite(bn.running_mean).all() and np.isfinite(bn.running_var).all()
    finite = np.isfinite(x).all(axis=1)
    # the recalibrated statistics are those of the finite samples under the averaged weights
    ref = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16))
    ref.load_state_dict({k: v for k, v in model.state_dict().items() if k.split(".")[0] in ("0", "1")})
    ref[1].reset_running_stats()
    ref[1].momentum = None
    ref.train()
    xs = x[finite]
    for i in range(0, len(xs), 16):
        ref(xs[i:i + 16])
    np.testing.assert_allclose(bn.running_mean, ref[1].running_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var, ref[1].running_var, rtol=1e-5, atol=1e-6)
    out = trainer.predict(x[finite])
    assert np.isfinite(out).all()


def test_recompute_batchnorm_refuses_when_no_finite_batch_is_left():
    model = _bn_mlp()
    bn = model[1]
    bn.running_mean[...] = 0.5
    x = (np.random.default_rng(5).standard_normal((8, 6)) * 1e20).astype(np.float32)  # finite; the variance is not
    with pytest.raises(FloatingPointError, match="every batch gave non-finite"):
        nn.utils.recompute_batchnorm(model, x, batch_size=4)
    assert np.all(bn.running_mean == 0.5) and model.training


def _trainer():
    fusetrain.manual_seed(7)  # the same weights for every trainer (drawn from the global stream)
    model = _bn_mlp(dropout=0.3)
    return model, fusetrain.Trainer(model, optim.SGD(model.parameters(), lr=0.05, momentum=0.9))


def test_two_fits_in_two_threads_are_each_reproducible():
    x, y = classification_problem(n=256, d=6, k=3, seed=4)
    ref_model, ref = _trainer()
    ref_loss = ref.fit(x, y, epochs=3, batch_size=16, seed=11, verbose=0).history["loss"]
    runs = {k: _trainer() for k in ("a", "b")}
    results, barrier = {}, threading.Barrier(2)

    def run(k):
        barrier.wait()  # both fits draw dropout masks and shuffles at the same time
        results[k] = runs[k][1].fit(x, y, epochs=3, batch_size=16, seed=11, verbose=0).history["loss"]
    threads = [threading.Thread(target=run, args=(k,)) for k in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for k, (model, _) in runs.items():
        assert results[k] == ref_loss, f"thread {k}'s losses differ from the same fit run alone"
        for (name, v), w in zip(ref_model.state_dict().items(), model.state_dict().values()):
            assert np.array_equal(v, w), f"thread {k}: {name} differs"
