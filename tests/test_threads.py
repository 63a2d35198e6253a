"""fusetrain's thread pool as a guest in the user's process: no writes to os.environ, a forked
child trains, OMP_NUM_THREADS and set_num_threads are honoured, idle workers sleep, two Python
threads may run kernels at once, and no training or inference path calls into BLAS."""
import multiprocessing
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import fusetrain
from fusetrain import _core, nn, optim
from testutils import assert_close


def _run(code, **env):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, **env))
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_import_leaves_os_environ_alone():
    code = ("import os, json; before = dict(os.environ); import fusetrain; "
            "fusetrain.nn.Linear(3, 2)(__import__('numpy').ones((70000, 3), 'float32')); "
            "print(json.dumps({k: v for k, v in os.environ.items() if before.get(k) != v}))")
    assert _run(code) == "{}"


def test_thread_count_follows_omp_num_threads_and_set_num_threads():
    assert _run("from fusetrain import _core; print(_core.num_threads())", OMP_NUM_THREADS="1") == "1"
    assert _run("from fusetrain import _core; print(_core.num_threads())", OMP_NUM_THREADS="3,2") == "3"
    affinity = len(os.sched_getaffinity(0))
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", "from fusetrain import _core; print(_core.default_num_threads())"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert int(out.stdout) <= affinity
    before = _core.num_threads()
    try:
        _core.set_num_threads(1)
        assert _core.num_threads() == 1
        with pytest.raises(ValueError, match="num_threads must be >= 1"):
            _core.set_num_threads(0)
        assert _core.num_threads() == 1
    finally:
        _core.set_num_threads(before)


def _fit_small(seed):
    fusetrain.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((512, 20)).astype(np.float32)
    y = rng.integers(0, 4, 512)
    model = nn.Sequential(nn.Linear(20, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 4))
    trainer = fusetrain.Trainer(model, optim.Adam(model.parameters(), lr=1e-2))
    hist = trainer.fit(x, y, epochs=2, batch_size=128, verbose=0, shuffle=False)
    return hist.history["loss"][-1]


def test_a_forked_child_trains_after_the_parent_trained():
    parent = _fit_small(0)  # the pool's workers now exist in the parent
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        result = pool.map_async(_fit_small, [0, 0])
        child = result.get(timeout=120)  # a pool that did not survive fork would hang here
    assert child == [parent, parent]


def test_idle_workers_sleep():
    x = np.random.default_rng(0).standard_normal(1 << 22).astype(np.float32)
    fusetrain.ops.global_norm(x)  # a parallel kernel: wakes the workers
    time.sleep(0.05)
    cpu0 = time.process_time()
    time.sleep(0.3)
    spent = time.process_time() - cpu0
    assert spent < 0.03, f"the process used {spent:.3f} s of CPU while idle for 0.3 s"


def test_two_python_threads_may_run_kernels_at_once():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((300, 400)).astype(np.float32)
    b = rng.standard_normal((400, 500)).astype(np.float32)
    expected = fusetrain.ops.matmul(a, b)
    results, errors = [], []

    def work():
        try:
            for _ in range(20):
                results.append(fusetrain.ops.matmul(a, b).copy())
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)
    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 60
    for r in results:
        assert np.array_equal(r, expected)


def test_an_error_inside_a_parallel_task_is_raised_not_fatal():
    assert _core._parallel_check(1000) == 1000 * 1001 // 2
    for fail_at in (0, 1, 999):
        with pytest.raises(ValueError, match=f"task {fail_at} failed"):
            _core._parallel_check(1000, fail_at)
    assert _core._parallel_check(1000) == 1000 * 1001 // 2  # the pool still works


_BLAS = ("matmul", "dot", "vdot", "inner", "tensordot", "einsum")


@pytest.fixture
def no_blas(monkeypatch):
    """numpy's BLAS entry points raise while the fixture is active."""
    def refuse(*args, **kwargs):
        raise AssertionError("a BLAS call on a fusetrain hot path")
    for name in _BLAS:
        monkeypatch.setattr(np, name, refuse)
    yield


@pytest.mark.parametrize("model_fn, shape", [
    (lambda: nn.Sequential(nn.Conv1d(1, 8, 5, stride=2, padding=1), nn.ReLU(), nn.Conv1d(8, 8, 3, 2, 1), nn.ReLU(),
                           nn.Flatten(), nn.Linear(8 * 10, 3)), (6, 1, 40)),
    (lambda: nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                           nn.Conv2d(6, 6, 3, padding=1, groups=6), nn.ReLU(), nn.Conv2d(6, 8, 1),
                           nn.GlobalAvgPool2d(), nn.Dropout(0.2), nn.Linear(8, 3)), (4, 3, 9, 9)),
])
def test_training_and_inference_never_call_blas(no_blas, model_fn, shape):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, 3, shape[0])
    model = model_fn()
    opt = optim.AdamW(model.parameters(), lr=1e-3, max_grad_norm=1.0)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(2):
        loss_fn(model(x), y)
        opt.zero_grad()
        model.backward(loss_fn.backward())
        opt.step()
    model.eval()
    out = model(x)
    assert out.shape == (shape[0], 3) and np.isfinite(out).all()


def test_results_do_not_depend_on_the_thread_count_of_small_reductions():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4096, 64)).astype(np.float32)
    bn = nn.BatchNorm1d(64)
    before = _core.num_threads()
    outs = []
    try:
        for t in (1, 2, 3):
            _core.set_num_threads(t)
            y = bn(x).copy()
            outs.append((y, bn.backward(np.ones_like(x)).copy(), bn.weight.grad.copy()))
            bn.zero_grad()
    finally:
        _core.set_num_threads(before)
    for o in outs[1:]:
        for a, b in zip(outs[0], o):
            assert np.array_equal(a, b)
    assert_close(outs[0][0].mean(axis=0), np.zeros(64), atol=1e-5, name="normalized mean")
