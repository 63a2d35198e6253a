"""The checkpoint reader over random damage (hypothesis): a file truncated anywhere, bytes
overwritten anywhere, garbage appended, or all of these together must either be refused with a
CheckpointError, changing nothing, or read back exactly as written (bytes of the zip container
that nothing reads)."""
import os
import tempfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fusetrain
from fusetrain import callbacks, optim
from fusetrain.models import MLP
from fusetrain.optim import lr_scheduler
from fusetrain.train import CheckpointError, Trainer, checkpoint, load_weights
from test_checkpoint import _assert_same
from testutils import classification_problem

PROPERTY = settings(max_examples=int(os.environ.get("FUSETRAIN_HYPOTHESIS_EXAMPLES", "100")), deadline=None,
                    database=None, suppress_health_check=[HealthCheck.too_slow])

_GOOD = {}


def _good():
    """The bytes of a checkpoint of a small trained run (optimizer, scheduler, callbacks), made once."""
    if not _GOOD:
        fusetrain.manual_seed(0)
        x, y = classification_problem(20, 5, 3)
        model = MLP(5, (6,), 3)
        opt = optim.AdamW(model.parameters(), lr=1e-2)
        t = Trainer(model, opt, scheduler=lr_scheduler.ExponentialLR(opt, 0.9),
                    callbacks=[callbacks.EarlyStopping(monitor="loss", restore_best_weights=True), callbacks.EMA()])
        t.fit(x, y, epochs=2, batch_size=10, verbose=0)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "good.npz")
            t.save_checkpoint(path)
            with open(path, "rb") as f:
                _GOOD["bytes"] = f.read()
            _GOOD["content"] = checkpoint.read(path)
    return _GOOD["bytes"], _GOOD["content"]


damage = st.fixed_dictionaries(dict(
    cut=st.one_of(st.none(), st.floats(0.0, 1.0, exclude_max=True)),
    writes=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 255)), max_size=8),
    tail=st.binary(max_size=64)))


@PROPERTY
@given(damage)
def test_damaged_files_are_refused_or_read_unchanged(d):
    good, content = _good()
    data = bytearray(good)
    for where, value in d["writes"]:
        data[int(where * len(data))] = value
    if d["cut"] is not None:
        data = data[:int(d["cut"] * len(data))]
    data += d["tail"]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "damaged.npz")
        with open(path, "wb") as f:
            f.write(bytes(data))
        model = MLP(5, (6,), 3)
        before = model.state_dict()
        try:
            got = checkpoint.read(path)
        except CheckpointError:
            try:
                load_weights(path, model)
            except CheckpointError:
                _assert_same(model.state_dict(), before, "model after a refused load")
                return
            raise AssertionError("read refused the file but load_weights took it")
        _assert_same(got, content, "damaged file")
        load_weights(path, model)
        _assert_same(model.state_dict(), content["model"]["state"], "loaded weights")


@PROPERTY
@given(st.binary(max_size=512))
def test_arbitrary_bytes_are_refused(blob):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "blob.npz")
        with open(path, "wb") as f:
            f.write(blob)
        try:
            checkpoint.read(path)
        except CheckpointError:
            return
        raise AssertionError("random bytes were read as a checkpoint")


def test_the_good_file_reads():
    good, content = _good()
    assert content["epoch"] == 2 and np.isfinite(content["model"]["state"]["0.weight"]).all()
