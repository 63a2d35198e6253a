"""Data-parallel training on real ranks: each test launches this file under ``mpiexec -n 2`` and checks
what the ranks wrote against one process training the same model with the whole batch.

A scenario below runs on every rank. Skipped, with the reason, without mpi4py or an mpiexec
(pip install '.[mpi]'); under CI=true a missing mpi4py fails instead. The same scenarios on GPUs
(NCCL) are marked cuda and need two GPUs."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fusetrain
from fusetrain import callbacks, nn, optim
from fusetrain.optim.lr_scheduler import ExponentialLR
from fusetrain.train import Trainer

PACKAGE_PARENT = Path(fusetrain.__file__).resolve().parents[1]
RANKS = 2
LAUNCH_TIMEOUT = 120


# ---------------------------------------------------------------- what every rank runs


def sync_model(seed, device="cpu"):
    """conv - BN2d - ReLU - linear - BN1d (no affine, cumulative average) - ReLU - linear, its
    batchnorms synchronized."""
    fusetrain.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 16), nn.BatchNorm1d(16, affine=False, momentum=None), nn.ReLU(),
                          nn.Linear(16, 5))
    return nn.SyncBatchNorm.convert_sync_batchnorm(model).to(device)


def plain_model(seed, device="cpu"):
    """linear - BN1d - ReLU - dropout - linear, plain (per-rank) batchnorm."""
    fusetrain.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(32, 4)).to(device)


def images(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1, 6, 6)).astype(np.float32)
    w = rng.normal(size=(36, 5))
    return x, (x.reshape(n, -1) @ w + rng.normal(size=(n, 5))).argmax(1)


class GradNorms(callbacks.Callback):
    """The global gradient norm of each step (the averaged gradient's on several ranks)."""

    def __init__(self):
        self.norms = []

    def on_train_batch_end(self, batch, logs=None):
        self.norms.append(float(self.trainer.optimizer.last_grad_norm))


class BatchSizes(callbacks.Callback):
    def __init__(self):
        self.sizes = []

    def on_train_batch_end(self, batch, logs=None):
        self.sizes.append(int(logs["size"]))


def sync_trainer(model, out=None):
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    cbs = [GradNorms()] + ([callbacks.ModelCheckpoint(str(out / "ck-{epoch}.npz"))] if out is not None else [])
    return Trainer(model, opt, max_grad_norm=1.0, scheduler=ExponentialLR(opt, gamma=0.9), callbacks=cbs,
                   device=model_device(model))


def model_device(model):
    return "cuda" if fusetrain.backend.is_cuda_array(next(model.parameters()).data) else "cpu"


def _save(out, rank, trainer, **extra):
    np.savez(out / f"state{rank}.npz", **trainer.model.state_dict())
    (out / f"run{rank}.json").write_text(json.dumps({"history": trainer.history.history, **extra}))


def scenario_sync(out, rank, device):
    """4 epochs, batch 32 per rank, SyncBatchNorm, momentum SGD, clipping, a checkpoint per epoch."""
    x, y = images(512, 0)
    val = images(70, 1)
    model = sync_model(rank, device)  # each rank starts elsewhere: rank 0's weights must win
    trainer = sync_trainer(model, out)
    trainer.fit(x, y, epochs=4, batch_size=32, validation_data=val, seed=7, verbose=0)
    _save(out, rank, trainer, norms=trainer.callbacks[0].norms, max_grad_norm=trainer.max_grad_norm)


def scenario_plain(out, rank, device):
    """Plain batchnorm and dropout; 251 samples: each rank takes 126 (one sample twice in an epoch)."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(251, 12)).astype(np.float32)
    y = (x[:, :4] * 2 + rng.normal(size=(251, 4))).argmax(1)
    model = plain_model(rank, device)
    sizes = BatchSizes()
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.05, momentum=0.9), callbacks=[sizes], device=device)
    trainer.fit(x, y, epochs=2, batch_size=32, seed=3, verbose=0)
    # the same input through the same weights in training mode: only the dropout masks can differ
    with fusetrain.random.use_stream(trainer.rng):
        probe = model(trainer._inputs(x[:64]))
    probe = probe.get() if hasattr(probe, "get") else probe
    _save(out, rank, trainer, sizes=sizes.sizes, probe=np.asarray(probe).tolist())


class Switch(nn.Module):
    """Runs ``a`` then ``b``, or ``b`` then ``a`` on every third call: its backward order changes."""

    def __init__(self, a, b):
        super().__init__()
        self.a, self.b, self.calls = a, b, 0

    def forward(self, x):
        self.calls += 1
        self.swapped = self.calls % 3 == 0
        first, second = (self.b, self.a) if self.swapped else (self.a, self.b)
        return second(first(x))

    def backward(self, g):
        first, second = (self.b, self.a) if self.swapped else (self.a, self.b)
        return first.backward(second.backward(g))


def switch_model(seed):
    """Linear layers, one of them used at two places (its gradient is complete after both backwards)."""
    fusetrain.manual_seed(seed)
    shared = nn.Linear(16, 16)
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), shared, nn.ReLU(), Switch(nn.Linear(16, 16), nn.Linear(16, 16)),
                         nn.ReLU(), shared, nn.ReLU(), nn.Linear(16, 3))


def scenario_ddp(out, rank, device):
    """A hand-written loop with DistributedDataParallel (tiny buckets, so many overlap backward; a
    layer order that changes every third step), next to the same model trained on the whole batch
    in this rank alone; and the collectives (on CuPy arrays too on GPUs)."""
    import fusetrain.distributed as dist
    dist.init()
    size = dist.get_world_size()
    xp = fusetrain.backend.cupy_module() if device == "cuda" else np
    rng = np.random.default_rng(5)
    x = xp.asarray(rng.normal(size=(48, 10)).astype(np.float32))
    y = xp.asarray(rng.integers(0, 3, 48))
    ref = switch_model(0).to(device)
    ddp = dist.DistributedDataParallel(switch_model(rank).to(device), bucket_cap_mb=0.0005)
    opt, ref_opt = optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9), optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    loss_fn, ref_loss = nn.CrossEntropyLoss(), nn.CrossEntropyLoss()
    for step in range(8):
        lo = (step % 2) * 24
        xb, yb = x[lo:lo + 24], y[lo:lo + 24]
        loss_fn(ddp(xp.ascontiguousarray(xb[rank::size])), xp.ascontiguousarray(yb[rank::size]))
        opt.zero_grad()
        ddp.backward(loss_fn.backward())
        opt.step()
        ref_loss(ref(xb), yb)
        ref_opt.zero_grad()
        ref.backward(ref_loss.backward())
        ref_opt.step()
    stats = ddp.comm_stats
    buckets = len(ddp._reducer._buckets)
    ddp.close()
    a = xp.arange(6, dtype=np.float64) * (rank + 1)
    dist.all_reduce(a)
    m = xp.full(3, float(rank), dtype=np.float32)
    dist.all_reduce(m, op="mean")
    i = xp.array([rank + 1, 10 * rank], dtype=np.int64)
    dist.all_reduce(i)
    b = xp.full(4, rank + 5.0, dtype=np.float32)
    dist.broadcast(b, src=1)
    dist.barrier()
    np.savez(out / f"state{rank}.npz", **ddp.module.state_dict())
    np.savez(out / f"ref{rank}.npz", **ref.state_dict())
    (out / f"run{rank}.json").write_text(json.dumps({
        "stats": stats, "buckets": buckets, "rank": dist.get_rank(), "size": size, "sum": a.tolist(),
        "mean": m.tolist(), "ints": i.tolist(), "bcast": b.tolist(), "linear_class": type(ddp.module[0]).__name__,
        "restored": type(ddp.module[0]) is nn.Linear}))


def scenario_refuse(out, rank, device):
    """fit called with data of other sizes on the two ranks, then with a bad label on rank 1 only."""
    rng = np.random.default_rng(4)
    model = plain_model(0)
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.1))
    errors = {}
    x = rng.normal(size=(64 + rank, 12)).astype(np.float32)
    try:
        trainer.fit(x, np.arange(len(x)) % 4, epochs=1, verbose=0)
    except ValueError as exc:
        errors["sizes"] = str(exc)
    y = np.arange(64) % 4
    if rank == 1:
        y[5] = 9
    try:
        trainer.fit(x[:64], y, epochs=1, verbose=0)
    except (ValueError, RuntimeError) as exc:
        errors["labels"] = f"{type(exc).__name__}: {exc}"
    _save(out, rank, trainer, errors=errors, epoch=trainer.epoch)


def scenario_raise_in_fit(out, rank, device):
    """Rank 1 raises in a callback at its third batch; the caller even catches it."""
    class Boom(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if rank == 1 and batch == 2:
                raise ValueError("boom on purpose")

    model = plain_model(0)
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.1), callbacks=[Boom()])
    x = np.random.default_rng(0).normal(size=(400, 12)).astype(np.float32)
    try:
        trainer.fit(x, np.arange(400) % 4, epochs=50, batch_size=8, verbose=0)
    except ValueError:
        (out / f"caught{rank}").write_text("the job went on")
        time.sleep(60)


def scenario_raise_uncaught(out, rank, device):
    """Rank 1 raises outside any fit while rank 0 waits at a barrier."""
    import fusetrain.distributed as dist
    dist.init()
    if rank == 1:
        raise KeyError("nobody catches this")
    dist.barrier()


def _run_scenario(name, out, device):
    import fusetrain.distributed as dist
    dist.init("nccl" if device == "cuda" else None)
    globals()["scenario_" + name](Path(out), dist.get_rank(), device)


# ---------------------------------------------------------------- launching


def _mpiexec():
    found = shutil.which("mpiexec") or shutil.which("mpiexec", path=str(Path(sys.executable).parent))
    return found


def _need_mpi():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but mpi4py cannot be imported: the data-parallel tests would be skipped; "
                        "install the mpi extra (pip install '.[mpi]')")
        pytest.skip("needs mpi4py and an MPI (pip install '.[mpi]')")
    if _mpiexec() is None:
        pytest.skip("needs an mpiexec on PATH (pip install '.[mpi]' brings MPICH's)")


def launch(*argv, cwd, ranks=RANKS, timeout=LAUNCH_TIMEOUT):
    """``mpiexec -n ranks python argv...`` with one kernel thread per rank (OMP_NUM_THREADS=1);
    (returncode, stdout, stderr, seconds). On timeout the whole launch (mpiexec, its proxies and
    ranks) is killed."""
    _need_mpi()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE_PARENT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    cmd = [_mpiexec(), "-n", str(ranks), sys.executable, *map(str, argv)]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} did not end within {timeout} s\n--- stdout\n{stdout}\n--- stderr\n{stderr}")
    return proc.returncode, stdout, stderr, time.monotonic() - start


def scenario(name, out, device="cpu"):
    """Run scenario ``name`` on the ranks; returns each rank's (state, run) in rank order."""
    out.mkdir(parents=True, exist_ok=True)
    rc, stdout, stderr, _ = launch(__file__, name, out, device, cwd=out)
    assert rc == 0, f"scenario {name} failed (exit status {rc})\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    return [(dict(np.load(out / f"state{r}.npz")), json.loads((out / f"run{r}.json").read_text()))
            for r in range(RANKS)]


def two_gpus():
    if not fusetrain.cuda_available():
        return False
    return fusetrain.backend.cupy_module().cuda.runtime.getDeviceCount() >= RANKS


DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not two_gpus(), reason="NCCL needs two GPUs (one per rank), CuPy and fusetrain._cuda")])]


def assert_close(actual, expected, name, rtol=2e-4, atol=2e-5):
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64),
                               rtol=rtol, atol=atol, err_msg=name)


# ---------------------------------------------------------------- the tests


@pytest.fixture(scope="module", params=DEVICES)
def sync_run(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"sync-{request.param}")
    return request.param, out, scenario("sync", out, request.param)


def _one_process_sync(device, epochs, resume=None):
    model = sync_model(0, device)
    trainer = sync_trainer(model)
    if resume is not None:
        assert trainer.load_checkpoint(resume) == 2
    x, y = images(512, 0)
    trainer.fit(x, y, epochs=epochs, batch_size=64, validation_data=images(70, 1), seed=7, verbose=0)
    return trainer


@pytest.mark.mpi
def test_two_ranks_of_32_with_syncbatchnorm_train_as_one_process_of_64(sync_run):
    device, out, ranks = sync_run
    one = _one_process_sync(device, epochs=2)
    saved = fusetrain.train.checkpoint.read(out / "ck-2.npz")  # rank 0 after two epochs
    state = one.model.state_dict()
    assert sorted(saved["model"]["state"]) == sorted(state)
    for key, value in state.items():
        assert_close(saved["model"]["state"][key], value, key)
    for key, values in one.history.history.items():
        assert_close(saved["history"][key], values, key, rtol=1e-5, atol=1e-6)
    # clipping took part: the averaged gradient's norm exceeded max_grad_norm in some steps, not all
    norms = ranks[0][1]["norms"]
    assert len(norms) == 4 * 8 and max(norms[:16]) > 1.0 > min(norms[:16])
    assert_close(norms[:16], one.callbacks[0].norms, "gradient norms")


@pytest.mark.mpi
def test_replicas_are_bitwise_identical_and_agree_on_the_history(sync_run):
    _, _, ((state0, run0), (state1, run1)) = sync_run
    assert sorted(state0) == sorted(state1)
    for key in state0:  # parameters, and SyncBatchNorm's running statistics too
        assert np.array_equal(state0[key], state1[key]), key
    assert run0["history"] == run1["history"] and run0["norms"] == run1["norms"]
    assert len(run0["history"]["loss"]) == 4 and len(run0["history"]["val_loss"]) == 4


@pytest.mark.mpi
def test_a_checkpoint_of_two_ranks_resumes_on_one_process_as_the_two_ranks_went_on(sync_run):
    device, out, ((state0, run0), _) = sync_run
    resumed = _one_process_sync(device, epochs=4, resume=out / "ck-2.npz")
    for key, value in resumed.model.state_dict().items():
        assert_close(value, state0[key], key)
    for key, values in run0["history"].items():
        assert_close(resumed.history.history[key], values, key, rtol=1e-5, atol=1e-6)
    assert resumed.history.epoch == [0, 1, 2, 3]


@pytest.mark.mpi
@pytest.mark.parametrize("device", DEVICES)
def test_plain_batchnorm_keeps_each_ranks_statistics_and_dropout_differs(tmp_path, device):
    (state0, run0), (state1, run1) = scenario("plain", tmp_path, device)
    params = [k for k in state0 if not k.startswith("1.") or k in ("1.weight", "1.bias")]
    for key in params:
        assert np.array_equal(state0[key], state1[key]), key
    assert not np.allclose(state0["1.running_mean"], state1["1.running_mean"])
    assert not np.allclose(state0["1.running_var"], state1["1.running_var"])
    # 8 steps, and the probe's forward in training mode
    assert int(state0["1.num_batches_tracked"]) == int(state1["1.num_batches_tracked"]) == 9
    assert run0["history"] == run1["history"]
    # 251 samples on 2 ranks: the permutation extended to 252, 126 each, in batches of 32
    assert run0["sizes"] == run1["sizes"] == [32, 32, 32, 30] * 2
    probe0, probe1 = np.array(run0["probe"]), np.array(run1["probe"])
    assert not np.allclose(probe0, probe1), "the ranks drew the same dropout masks"


@pytest.mark.mpi
@pytest.mark.parametrize("device", DEVICES)
def test_hand_written_loop_with_distributed_data_parallel(tmp_path, device):
    ranks = scenario("ddp", tmp_path, device)
    for rank, (state, run) in enumerate(ranks):
        ref = np.load(tmp_path / f"ref{rank}.npz")
        for key in ref.files:  # the whole batch in one process, rank 0's initial weights
            assert_close(state[key], ref[key], key, rtol=1e-5, atol=1e-6)
        assert np.array_equal(state["0.weight"], ranks[0][0]["0.weight"])
        stats = run["stats"]
        assert stats["steps"] == 8 and stats["bytes"] == 4 * (10 * 16 + 16 + 3 * (16 * 16 + 16) + 16 * 3 + 3)
        assert run["buckets"] > 5
        assert stats["early"] >= 8 * (run["buckets"] - 2)  # most buckets started during backward
        assert run["linear_class"] == "Linear" and run["restored"]
        assert (run["rank"], run["size"]) == (rank, 2)
        assert run["sum"] == [3.0 * v for v in range(6)]
        assert run["mean"] == [0.5] * 3
        assert run["ints"] == [3, 10]
        assert run["bcast"] == [6.0] * 4


@pytest.mark.mpi
def test_bad_input_on_any_rank_raises_on_every_rank(tmp_path):
    (_, run0), (_, run1) = scenario("refuse", tmp_path)
    for run in (run0, run1):
        assert run["errors"]["sizes"].startswith("the ranks disagree on len(x) (rank 0: 64, rank 1: 65); every rank "
                                                 "must build the same model and optimizer")
        assert run["epoch"] == 0 and run["history"] == {}
    assert run1["errors"]["labels"].startswith("ValueError: y holds labels outside [0, 4) (the model's 4 outputs): "
                                               "y[5] = 9")
    assert run0["errors"]["labels"].startswith("RuntimeError: rank 1 of 2 refused the call (ValueError: y holds "
                                               "labels outside [0, 4)")


@pytest.mark.mpi
@pytest.mark.parametrize("name, message", [("raise_in_fit", "rank 1 of 2: ValueError: boom on purpose"),
                                           ("raise_uncaught", "rank 1 of 2: uncaught KeyError: 'nobody catches this'")])
def test_an_exception_on_one_rank_ends_the_job_within_seconds(tmp_path, name, message):
    rc, stdout, stderr, seconds = launch(__file__, name, tmp_path, "cpu", cwd=tmp_path, timeout=60)
    assert rc != 0, stdout + stderr
    assert seconds < 20, f"the job took {seconds:.1f} s to end"
    assert f"fusetrain.distributed: {message}" in stderr, stderr
    assert "aborting all 2 ranks" in stderr
    assert not list(tmp_path.glob("caught*")), "a rank went on after the failure"


@pytest.mark.mpi
@pytest.mark.parametrize("device", DEVICES)
def test_the_command_line_trains_data_parallel_and_writes_one_run_folder(tmp_path, device):
    rc, stdout, stderr, _ = launch("-m", "fusetrain", "train", "--epochs", "3", "--device", device, cwd=tmp_path)
    assert rc == 0, stdout + stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.npz", "config.json", "curves.png", "history.csv",
                                                      "model.npz"]
    assert stdout.count("test accuracy") == 1 and stdout.count("wrote ") == 1, stdout
    assert "data parallel on 2 ranks, batch 64 each" in stdout
    assert len((run / "history.csv").read_text().splitlines()) == 1 + 3
    accuracy = float(stdout.split("test accuracy ")[1].split("%")[0])
    assert accuracy > 80, stdout
    saved = fusetrain.train.checkpoint.read(run / "checkpoint.npz")
    assert saved["epoch"] == 3


@pytest.mark.mpi
@pytest.mark.parametrize("argv, needle", [
    (["--epochs", "0"], "fusetrain train: error: argument --epochs: expected a value in [1, inf), got 0"),
    (["--optimizer", "sgd", "--lr", "1e30", "--no-batchnorm", "--clip-norm", "0", "--quiet", "--out", "run"],
     "fusetrain train: error: FloatingPointError: non-finite loss"),
], ids=["a bad flag", "a failure every rank meets"])
def test_an_error_every_rank_meets_is_one_line_from_rank_0(tmp_path, argv, needle):
    rc, stdout, stderr, _ = launch("-m", "fusetrain", "train", *argv, cwd=tmp_path)
    assert rc == 2, stdout + stderr
    assert stderr.count("\n") == 1 and stderr.startswith(needle), stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no run folder: nothing was written


if __name__ == "__main__":
    _run_scenario(*sys.argv[1:4])
