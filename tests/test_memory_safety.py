"""What the compiled module re-checks itself, whoever calls it: sizes whose products overflow,
indices that name no pixel, outputs that overlap their inputs, misaligned arrays. Each call must
raise ValueError and leave every array as it was; the ops in front of it copy what they may (a
misaligned input) and refuse what they must not (a misaligned in-place target)."""
import numpy as np
import pytest

from fusetrain import _core, nn, ops
from testutils import assert_close


def _f(*shape):
    return np.zeros(shape, np.float32)


def misaligned(a):
    """A writable copy of a whose data starts one byte past an element boundary."""
    a = np.asarray(a)
    buf = bytearray(a.nbytes + a.itemsize)
    m = np.frombuffer(buf, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    m[...] = a
    assert not m.flags.aligned and m.flags.writeable and m.flags.c_contiguous
    return m


# (name, call) pairs whose sizes overflow int64 when multiplied: every one used to pass its size
# check with a wrapped-around product (often 0, matching empty arrays) and then run its loops.
HUGE = 2**32
OVERFLOWING = [
    ("max_pool2d_forward", lambda: _core.max_pool2d_forward(_f(0), _f(0), np.zeros(0, np.int32), 1, HUGE, HUGE,
                                                          1, 1, 1, 1, 0, 0, 1, 1)),
    ("max_pool2d_forward-P", lambda: _core.max_pool2d_forward(_f(0), _f(0), np.zeros(0, np.int32), 2**62, 2, 2,
                                                            1, 1, 1, 1, 0, 0, 1, 1)),
    ("avg_pool2d_forward", lambda: _core.avg_pool2d_forward(_f(0), _f(0), 0, 2**33, 2**33, 1, 1, 1, 1, 0, 0, True)),
    ("avg_pool2d_backward", lambda: _core.avg_pool2d_backward(_f(0), _f(0), 0, 2**33, 2**33, 1, 1, 1, 1, 0, 0, True)),
    ("max_pool2d-kernel", lambda: _core.max_pool2d_forward(_f(4), _f(4), np.zeros(4, np.int32), 1, 2, 2,
                                                         2**40, 1, 1, 1, 2**40, 0, 1, 1)),
    ("adaptive", lambda: _core.adaptive_avg_pool2d_forward(_f(0), _f(0), 0, HUGE, HUGE, 1, 1)),
    ("im2col2d", lambda: _core.im2col2d(_f(0), _f(0), 2**31, 2**31, 4, 4, 1, 1, 1, 1, 0, 0, 1, 1)),
    ("conv2d_direct_forward", lambda: _core.conv2d_direct_forward(_f(0), _f(0), None, _f(0), _f(0), 2**40, 2**40,
                                                                  1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1)),
    ("conv-padding", lambda: _core.conv2d_direct_forward(_f(1), _f(1), None, _f(1), _f(1), 1, 1, 1, 1, 1, 1, 1, 1,
                                                         1, 1, 2**31 - 1, 2**31 - 1, 1, 1)),
    ("bias_act_dropout_forward", lambda: _core.bias_act_dropout_forward(_f(0), None, _f(0), 2**62, 4, 0, 0.0, 0.0,
                                                                        0, 0, None)),
    ("batchnorm_forward_train", lambda: _core.batchnorm_forward_train(_f(0), None, None, _f(0), _f(1), _f(1), None,
                                                                      None, 2**40, 1, 2**40, 1e-5, 0.1, False, 0.0,
                                                                      0, 0)),
    ("layernorm_forward", lambda: _core.layernorm_forward(_f(0), None, None, _f(0), _f(0), _f(0), 2**40, 2**40,
                                                          1e-5)),
    ("softmax_cross_entropy", lambda: _core.softmax_cross_entropy(_f(0), np.zeros(0, np.int64), None, 2**40, 2**40, 1.0)),
    ("cn_to_nc", lambda: _core.cn_to_nc(_f(0), None, _f(0), 2**31, 2**31, 2**31)),
]


@pytest.mark.parametrize("name,call", OVERFLOWING, ids=[n for n, _ in OVERFLOWING])
def test_core_sizes_that_overflow_int64_are_refused(name, call):
    with pytest.raises(ValueError, match="overflow|< 2\\*\\*31|fewer than 2\\*\\*31"):
        call()


def test_core_gemm_refuses_an_output_that_overlaps_an_operand():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((64, 64)).astype(np.float32)
    keep = a.copy()
    with pytest.raises(ValueError, match="out must not overlap a or b"):
        _core.gemm(a, a, a, False)
    with pytest.raises(ValueError, match="out must not overlap a or b"):
        _core.gemm(a[:8, :8], a.T[:8, :8], a[7:15, 7:15], False)
    big = rng.standard_normal((3, 16, 16)).astype(np.float32)
    before = big.copy()
    with pytest.raises(ValueError, match="out must not overlap"):
        _core.gemm(big[0], big[1, ::-1], big[1], True)  # b is a reversed view of out's rows
    np.testing.assert_array_equal(a, keep)
    np.testing.assert_array_equal(big, before)
    # disjoint parts of one buffer are fine, and the product is right
    _core.gemm(big[0], big[1], big[2], False)
    assert_close(big[2], before[0].astype(np.float64) @ before[1], rtol=1e-5, atol=1e-5, name="gemm")


def _aligned_calls():
    """(name, fn(make)) pairs: fn calls a binding with arrays passed through make(array)."""
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 4)).astype(np.float32)
    return [
        ("gemm-a", lambda m: _core.gemm(m(x[0, 0]), x[0, 1], _f(4, 4), False)),
        ("gemm-out", lambda m: _core.gemm(x[0, 0], x[0, 1], m(_f(4, 4)), False)),
        ("maxpool-x", lambda m: _core.max_pool2d_forward(m(x.ravel()), _f(24), np.zeros(24, np.int32), 6, 4, 4,
                                                        2, 2, 2, 2, 0, 0, 1, 1)),
        ("maxpool-indices", lambda m: _core.max_pool2d_backward(_f(24), m(np.zeros(24, np.int32)), _f(96), 6, 4, 4,
                                                               2, 2, 2, 2, 0, 0, 1, 1)),
        ("avgpool-out", lambda m: _core.avg_pool2d_forward(x.ravel(), m(_f(24)), 6, 4, 4, 2, 2, 2, 2, 0, 0, True)),
        ("conv-x", lambda m: _core.conv2d_direct_forward(m(x), _f(2, 3, 3, 3), None, _f(2, 2, 2, 2),
                                                         _f(*_core.conv2d_direct_saved_shape(2, 3, 4, 4, 3, 3, 1, 1,
                                                                                              0, 0, 1, 1)),
                                                         2, 3, 2, 1, 4, 4, 3, 3, 1, 1, 0, 0, 1, 1)),
        ("dropout-x", lambda m: _core.bias_act_dropout_forward(m(x.ravel()), None, _f(96), 8, 12, 1, 0.0, 0.5,
                                                               1, 0, None)),
        ("batchnorm-x", lambda m: _core.batchnorm_forward_train(m(x), None, None, _f(96), _f(3), _f(3), None, None,
                                                                2, 3, 16, 1e-5, 0.1, False, 0.0, 0, 0)),
        ("sgd-param", lambda m: _core.sgd_step(m(_f(8)), _f(8), None, 0.1, 0.0, 0.0, 0.0, False, True, 1.0)),
        ("pow_sum", lambda m: _core.pow_sum(m(x.ravel()), 2.0)),
    ]


@pytest.mark.parametrize("name,call", _aligned_calls(), ids=[n for n, _ in _aligned_calls()])
def test_core_refuses_misaligned_arrays(name, call):
    call(np.array)  # the same call with aligned arrays runs
    with pytest.raises(ValueError, match="is not aligned to its [48]-byte elements"):
        call(misaligned)


def test_ops_copy_misaligned_inputs():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    a, b = x.reshape(12, 18), rng.standard_normal((18, 5)).astype(np.float32)
    labels = np.arange(12) % 18
    calls = [
        lambda m: ops.matmul(m(a), m(b)),
        lambda m: ops.matmul(m(a).T[:, :4], m(b)[:4]),
        lambda m: ops.conv2d_forward(m(x), m(w), m(w[:, 0, 0, 0]), padding=1)[0],
        lambda m: ops.max_pool2d_forward(m(x), 2)[0],
        lambda m: ops.avg_pool2d_forward(m(x), 3, 1, 1),
        lambda m: ops.adaptive_avg_pool2d_forward(m(x), 4),
        lambda m: ops.bias_act_dropout_forward(m(x), m(x[0, 0, 0]), act="tanh", p=0.3, seed=5),
        lambda m: ops.batchnorm_forward(m(x), m(np.ones(3, np.float32)), m(np.zeros(3, np.float32)), None, None,
                                        training=True)[0],
        lambda m: ops.layernorm_forward(m(a), None, None)[0],
        lambda m: np.float64(ops.softmax_cross_entropy(m(a), m(labels))[0]),
        lambda m: np.float64(ops.global_norm([m(a), m(b)])),
    ]
    for i, f in enumerate(calls):
        assert_close(f(misaligned), f(np.array), rtol=0, atol=0, name=f"op {i}")
    conv = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(144, 5))
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(108, 7), nn.Tanh(), nn.Linear(7, 5))
    for model in (conv, mlp):
        for training in (True, False):
            model.train(training)
            assert_close(model(misaligned(x)), model(x), rtol=0, atol=0, name=f"model training={training}")


def test_ops_refuse_misaligned_in_place_targets_and_change_nothing():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((6, 5)).astype(np.float32)
    p, g = rng.standard_normal(8).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    out = misaligned(np.full((6, 6), 3.0, np.float32))
    with pytest.raises(ValueError, match="out is updated in place and must be aligned to its 4-byte elements"):
        ops.matmul(a, a.T, out)
    np.testing.assert_array_equal(out, 3.0)
    pm = misaligned(p)
    with pytest.raises(ValueError, match="param is updated in place and must be aligned"):
        ops.sgd_step(pm, g, lr=0.1)
    np.testing.assert_array_equal(pm, p)
    y = misaligned(np.full(a.shape, 3.0, np.float32))
    with pytest.raises(ValueError, match="out is updated in place and must be aligned"):
        ops.bias_act_dropout_forward(a, None, act="relu", out=y)
    np.testing.assert_array_equal(y, 3.0)
