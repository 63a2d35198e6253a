"""ops.matmul: the C++ GEMM against float64 NumPy (and torch), on strided and transposed views,
edge sizes, accumulation into the output, and bad arguments."""
import numpy as np
import pytest

from fusetrain import ops
from fusetrain.backend import use_backend
from testutils import assert_close

# (M, K, N): sizes 0 and 1, primes, not multiples of the tile (8 or 6 rows, 32 or 16 columns),
# and the shapes of a Linear layer at batch 128.
SHAPES = [(0, 3, 4), (3, 0, 4), (1, 1, 1), (7, 3, 5), (13, 100, 33), (8, 32, 32), (9, 257, 31),
          (128, 784, 1024), (1024, 128, 784), (128, 1024, 10), (10, 128, 1024), (5, 300, 97)]


def _operand(rng, shape, layout):
    """A float32 array of `shape` stored C-order ("c"), as the transpose of a C array ("t"), or as a
    strided slice ("s")."""
    if layout == "c":
        return rng.standard_normal(shape).astype(np.float32)
    if layout == "t":
        return rng.standard_normal(shape[::-1]).astype(np.float32).T
    big = rng.standard_normal((shape[0] * 2 + 1, shape[1] * 3 + 2)).astype(np.float32)
    return big[1::2, 2::3][:shape[0], :shape[1]]


def _tol(K):
    return dict(rtol=1e-5, atol=max(1e-5, 3e-7 * K))


@pytest.mark.parametrize("M,K,N", SHAPES)
@pytest.mark.parametrize("layout", ["cc", "ct", "tc", "ss"])
def test_matches_float64(M, K, N, layout):
    rng = np.random.default_rng(M * 1000 + K + N)
    a, b = _operand(rng, (M, K), layout[0]), _operand(rng, (K, N), layout[1])
    expect = a.astype(np.float64) @ b.astype(np.float64)
    out = np.full((M, N), np.nan, np.float32)
    assert ops.matmul(a, b, out) is out
    assert_close(out, expect, name="a @ b", **_tol(K))
    acc = np.linspace(-1, 1, M * N, dtype=np.float32).reshape(M, N)
    ops.matmul(a, b, acc, accumulate=True)
    assert_close(acc, expect + np.linspace(-1, 1, M * N).reshape(M, N), name="acc + a @ b", **_tol(K))


def test_numpy_backend_is_numpy_matmul_and_new_output():
    rng = np.random.default_rng(0)
    a, b = _operand(rng, (6, 9), "c"), _operand(rng, (9, 4), "t")
    with use_backend("numpy"):
        got = ops.matmul(a, b)
        a64 = a.astype(np.float64)
        got64 = ops.matmul(a64, b.astype(np.float64))  # float64 gradient checks go through the twin
    assert got.dtype == np.float32 and got64.dtype == np.float64
    assert_close(got, a.astype(np.float64) @ b, rtol=1e-6, atol=1e-6)
    assert_close(ops.matmul(a, b), got, rtol=1e-6, atol=1e-6)


def test_deterministic_across_thread_counts():
    from fusetrain import _core

    rng = np.random.default_rng(5)
    a, b = _operand(rng, (77, 301), "c"), _operand(rng, (301, 130), "t")
    before = _core.num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            _core.set_num_threads(t)
            outs.append(ops.matmul(a, b))
    finally:
        _core.set_num_threads(before)
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


def test_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    a, b = _operand(rng, (33, 70), "t"), _operand(rng, (70, 45), "c")
    ref = torch.matmul(torch.from_numpy(np.ascontiguousarray(a)), torch.from_numpy(b)).numpy()
    assert_close(ops.matmul(a, b), ref, rtol=1e-5, atol=1e-5)


def test_bad_arguments_name_what_is_wrong():
    a, b = np.ones((3, 4), np.float32), np.ones((4, 5), np.float32)
    with pytest.raises(ValueError, match="cannot be multiplied"):
        ops.matmul(a, np.ones((3, 5), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        ops.matmul(np.ones(4, np.float32), b)
    with pytest.raises(ValueError, match="out must have shape"):
        ops.matmul(a, b, np.empty((3, 4), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.matmul(a, b, np.empty((5, 3), np.float32).T)
    with pytest.raises(ValueError, match="needs out"):
        ops.matmul(a, b, accumulate=True)
    with pytest.raises(TypeError, match="numpy or cupy array"):
        ops.matmul([[1.0]], b)
    out = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match="overlap"):
        ops.matmul(out, out[:, :4], out)
    with pytest.raises(TypeError, match="float32"):
        ops.matmul(a, b, np.empty((3, 5), np.float64))
