"""fusetrain.distributed in one process (the ranks themselves: test_distributed_mpi.py).

``import fusetrain`` without mpi4py, a plain process as a world of one, the collectives' argument
checks, SyncBatchNorm's conversion and its world-of-one behaviour, the reducer's hooks on the
layers, each rank's share of an epoch, and the extras that bring MPI."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fusetrain
import fusetrain.distributed as dist
from fusetrain import nn, optim
from fusetrain.distributed import world as dist_world
from fusetrain.distributed.reducer import GradientReducer, _regions
from fusetrain.train import parallel

PACKAGE_PARENT = Path(fusetrain.__file__).resolve().parents[1]


def _plain_env():
    """The environment without an MPI launcher's variables: a plain process."""
    env = {k: v for k, v in os.environ.items() if k not in dist_world.LAUNCHER_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_PARENT), os.environ.get("PYTHONPATH", "")])
    return env


def test_a_plain_process_is_a_world_of_one_without_mpi4py():
    code = """
import sys
import numpy as np
import fusetrain, fusetrain.distributed as dist
from fusetrain import nn
assert not any(m.startswith("mpi4py") for m in sys.modules), "import fusetrain imported mpi4py"
try:
    dist.get_rank()
except RuntimeError as exc:
    print("before:", exc)
try:
    dist.DistributedDataParallel(nn.Linear(2, 2))
except RuntimeError as exc:
    print("ddp before:", exc)
print("initialized:", dist.is_initialized())
dist.init()
dist.init()  # a second call returns at once
a = np.arange(4, dtype=np.float32)
dist.all_reduce(a); dist.all_reduce(a, op="mean"); dist.broadcast(a, src=0); dist.barrier()
print("world:", dist.get_rank(), dist.get_world_size(), dist.get_local_rank(), dist.is_initialized(), a.tolist())
print("excepthook untouched:", sys.excepthook is sys.__excepthook__)
print("mpi4py:", sorted(m for m in sys.modules if m.startswith("mpi4py")))
"""
    proc = subprocess.run([sys.executable, "-c", code], env=_plain_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "before: the process group is not initialized: call fusetrain.distributed.init() first",
        "ddp before: DistributedDataParallel needs the process group: call fusetrain.distributed.init() first",
        "initialized: False",
        "world: 0 1 0 True [0.0, 1.0, 2.0, 3.0]",
        "excepthook untouched: True",
        "mpi4py: []",
    ]


def test_under_a_launcher_without_mpi4py_init_says_what_to_install(tmp_path):
    (tmp_path / "mpi4py").mkdir()
    (tmp_path / "mpi4py" / "__init__.py").write_text("raise ImportError('no mpi4py in this environment')\n")
    env = dict(_plain_env(), PMI_SIZE="2", PMI_RANK="0")
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    code = "import fusetrain.distributed as dist\ndist.init()"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert ("ImportError: this process was started by an MPI launcher (mpiexec/mpirun), but mpi4py cannot be "
            "imported (no mpi4py in this environment); install it with: pip install 'fusetrain[mpi]'") in proc.stderr


@pytest.fixture
def world_of_one():
    dist.init()
    assert dist.get_world_size() == 1
    return dist_world.current()


@pytest.mark.parametrize("call, error, message", [
    (lambda a: dist.all_reduce([1.0, 2.0]), TypeError, "array must be a NumPy or CuPy array, got list"),
    (lambda a: dist.all_reduce(a[::2]), ValueError, "array must be a C-contiguous, writeable array"),
    (lambda a: dist.all_reduce(a, op="max"), ValueError, "op must be one of ('sum', 'mean'), got 'max'"),
    (lambda a: dist.all_reduce(a.astype(np.int64), op="mean"), TypeError,
     "op='mean' needs a floating-point array (the mean is written in place), got int64"),
    (lambda a: dist.all_reduce(a.astype(np.float16)), TypeError,
     "array must hold integers, float32 or float64 values, got dtype float16"),
    (lambda a: dist.broadcast(a, src=1), ValueError, "src must be a rank in [0, 1), got 1"),
    (lambda a: dist.broadcast(a, src=True), ValueError, "src must be a rank in [0, 1), got True"),
    (lambda a: dist.init(backend="gloo"), ValueError, "backend must be one of ('mpi', 'nccl') or None, got 'gloo'"),
    (lambda a: dist.init(abort_on_exception="yes"), TypeError, "abort_on_exception must be a bool, got str"),
])
def test_collectives_refuse_bad_arguments_and_change_nothing(world_of_one, call, error, message):
    a = np.arange(8, dtype=np.float32)
    with pytest.raises(error) as info:
        call(a)
    assert message in str(info.value)
    assert a.tolist() == list(range(8))


def test_a_read_only_array_is_refused(world_of_one):
    a = np.ones(3)
    a.flags.writeable = False
    with pytest.raises(ValueError, match="writeable=False"):
        dist.all_reduce(a)


def test_distributed_data_parallel_in_a_world_of_one_is_the_module(world_of_one):
    def build():
        fusetrain.manual_seed(3)
        return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 2))
    plain, ddp = build(), dist.DistributedDataParallel(build())
    x = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    g = np.ones((6, 2), dtype=np.float32)
    assert np.array_equal(plain(x), ddp(x))
    assert np.array_equal(plain.backward(g), ddp.backward(g))
    for p, q in zip(plain.parameters(), ddp.parameters()):
        assert np.array_equal(p.grad, q.grad)
    assert list(ddp.state_dict()) == ["module." + k for k in plain.state_dict()]
    assert ddp.comm_stats["steps"] == 0
    with pytest.raises(TypeError, match="module must be a fusetrain.nn.Module, got str"):
        dist.DistributedDataParallel("net")
    with pytest.raises(TypeError, match="module is already a DistributedDataParallel"):
        dist.DistributedDataParallel(ddp)
    with pytest.raises(ValueError, match="bucket_cap_mb must be a positive number, got 0"):
        dist.DistributedDataParallel(build(), bucket_cap_mb=0)


# ---------------------------------------------------------------- SyncBatchNorm


def _bn_net(seed):
    fusetrain.manual_seed(seed)
    shared = nn.BatchNorm1d(8)
    return nn.Sequential(nn.Linear(6, 8), shared, nn.ReLU(), nn.Dropout(0.25), nn.Linear(8, 8), shared, nn.ReLU(),
                         nn.Residual(nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8, affine=False))),
                         nn.Linear(8, 3))


def test_convert_sync_batchnorm_keeps_parameters_buffers_and_order():
    net = _bn_net(0)
    before = net.state_dict()
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm1d)]
    params = [(m.weight, m.bias, m.running_mean, m.running_var, m.num_batches_tracked) for m in bns]
    opt = optim.SGD(net.parameters(), lr=0.1)
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    assert converted is net
    syncs = [m for m in net.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert len(syncs) == 2 and not any(type(m) is nn.BatchNorm1d for m in net.modules())
    assert net[1] is net[5]  # one layer used twice stays one layer
    for m, (w, b, rm, rv, nbt) in zip(syncs, params):
        assert (m.weight, m.bias) == (w, b)
        assert m.running_mean is rm and m.running_var is rv and m.num_batches_tracked is nbt
    assert list(net.state_dict()) == list(before)
    opt.check_model(net)  # the optimizer's parameters are still the model's
    assert syncs[1].affine is False and syncs[1].weight is None
    one = nn.SyncBatchNorm.convert_sync_batchnorm(nn.BatchNorm2d(4, momentum=None, eps=1e-3))
    assert type(one) is nn.SyncBatchNorm and one.momentum is None and one.eps == 1e-3
    with pytest.raises(TypeError, match="convert_sync_batchnorm expects a fusetrain.nn.Module, got list"):
        nn.SyncBatchNorm.convert_sync_batchnorm([net])


def test_sync_batchnorm_in_a_world_of_one_trains_as_batchnorm():
    """Without other ranks SyncBatchNorm is the plain kernel, fused with the ReLU and dropout."""
    x = np.random.default_rng(1).normal(size=(10, 6)).astype(np.float32)
    g = np.random.default_rng(2).normal(size=(10, 3)).astype(np.float32)
    results = []
    for convert in (False, True):
        net = _bn_net(0)
        if convert:
            nn.SyncBatchNorm.convert_sync_batchnorm(net)
        fusetrain.manual_seed(5)
        y = net(x)
        gx = net.backward(g)
        results.append((y, gx, [p.grad.copy() for p in net.parameters()], net.state_dict()))
    (y0, gx0, grads0, state0), (y1, gx1, grads1, state1) = results
    assert np.array_equal(y0, y1) and np.array_equal(gx0, gx1)
    assert all(np.array_equal(a, b) for a, b in zip(grads0, grads1))
    assert all(np.array_equal(state0[k], state1[k]) for k in state0)


def test_sync_batchnorm_refuses_bad_input():
    bn = nn.SyncBatchNorm(3)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, C\) or \(N, C, \*\) with C=3, got shape"):
        bn(np.zeros((4, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="num_features must be a positive int, got 0"):
        nn.SyncBatchNorm(0)
    with pytest.raises(RuntimeError, match="backward\\(\\) called before forward\\(\\)"):
        nn.SyncBatchNorm(3).backward(np.zeros((4, 3), dtype=np.float32))


# ---------------------------------------------------------------- the reducer's hooks


def test_attached_layers_keep_their_name_and_results_and_get_their_class_back():
    def build():
        fusetrain.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 2))
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    g = np.ones((5, 2), dtype=np.float32)
    plain, hooked = build(), build()
    reducer = GradientReducer(hooked, world=None)
    reducer.attach()
    lin = hooked[0]
    assert type(lin).__name__ == "Linear" and isinstance(lin, nn.Linear) and type(lin) is not nn.Linear
    assert repr(hooked) == repr(plain)
    for net in (plain, hooked):
        fusetrain.manual_seed(9)
        net(x)
    assert np.array_equal(plain.backward(g), hooked.backward(g))  # not active: nothing is reduced
    with pytest.raises(RuntimeError, match="Linear already reports to another DistributedDataParallel or Trainer"):
        GradientReducer(hooked, world=None).attach()
    reducer.detach()
    assert type(lin) is nn.Linear and type(hooked[1]) is nn.BatchNorm1d
    GradientReducer(hooked, world=None).attach()  # free again


def test_gradient_runs_merge_consecutive_arena_views_and_keep_loose_parameters():
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 5))
    net.flatten_parameters()
    loose = nn.Linear(5, 2)
    params = list(net.parameters()) + list(loose.parameters())
    regions = _regions(params)
    # backward reaches the loose parameters (the model's last) first
    assert [r.grad.size for r in regions] == [2, 10, 12 + 4 + 20 + 5]
    assert regions[2].grad.base is net[0].weight.grad.base
    assert [start for _, start in regions[2].params] == [0, 12, 16, 36]


# ---------------------------------------------------------------- each rank's share


@pytest.mark.parametrize("n, size", [(10, 4), (12, 4), (1, 3), (7, 2), (5, 5)])
def test_each_rank_takes_every_size_th_sample_of_the_padded_permutation(n, size):
    perm = np.random.default_rng(n).permutation(n)
    shares = [parallel.share(perm, r, size) for r in range(size)]
    m = parallel.share_size(n, size)
    assert all(len(s) == m for s in shares)
    padded = np.resize(perm, m * size)
    assert np.array_equal(np.stack(shares, axis=1).reshape(-1), padded)  # batch b of all ranks = one process's
    assert sorted(set(np.concatenate(shares).tolist())) == list(range(n))
    assert len(np.concatenate(shares)) - n == m * size - n < size


@pytest.mark.parametrize("n, size", [(10, 4), (3, 4), (8, 2)])
def test_evaluation_chunks_cover_the_samples_once(n, size):
    chunks = [parallel.chunk(n, r, size) for r in range(size)]
    assert chunks[0][0] == 0 and chunks[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    assert max(hi - lo for lo, hi in chunks) - min(hi - lo for lo, hi in chunks) <= 1


def test_rank_zero_keeps_the_seed_and_the_others_draw_their_own():
    assert parallel.rank_seed(123, 0) == 123
    seeds = {parallel.rank_seed(123, r) for r in range(1, 8)}
    assert len(seeds) == 7 and 123 not in seeds and all(0 <= s < 2**64 for s in seeds)
    assert parallel.rank_seed(123, 3) == parallel.rank_seed(123, 3) != parallel.rank_seed(124, 3)


def test_the_mpi_extra_and_the_test_extra_bring_mpi4py_and_an_mpiexec():
    tomllib = pytest.importorskip("tomllib")
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    for name in ("mpi", "test"):  # CI installs the test extra: the data-parallel tests run there
        names = {req.split(";")[0].split(">")[0].split("=")[0].strip() for req in extras[name]}
        assert {"mpi4py", "mpich"} <= names, (name, extras[name])
