"""fusetrain.data: IDX round trips and errors, scaling/standardizing against the formulas,
batching, the bundled digits split, MNIST-1D (when installed) and synthetic MNIST."""
import gzip

import numpy as np
import pytest

from fusetrain import data


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (3, 5), (2, 3, 7)])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, dtype, shape, gz):
    rng = np.random.default_rng(3)
    a = (rng.normal(size=shape) * 50).astype(dtype)
    path = tmp_path / ("a.idx" + (".gz" if gz else ""))
    data.write_idx(path, a)
    b = data.read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.shape == a.shape
    np.testing.assert_array_equal(a, b)


def test_idx_layout_is_big_endian_mnist_format(tmp_path):
    # Hand-built header: magic 0x00000803 (ubyte, 3 dims), dims 2x3x5 as big-endian uint32.
    pixels = np.arange(30, dtype=np.uint8).reshape(2, 3, 5)
    raw = bytes([0, 0, 0x08, 3]) + np.array([2, 3, 5], dtype=">u4").tobytes() + pixels.tobytes()
    (tmp_path / "img").write_bytes(raw)
    with gzip.open(tmp_path / "img.gz", "wb") as f:
        f.write(raw)
    for name in ("img", "img.gz"):
        np.testing.assert_array_equal(data.read_idx(tmp_path / name), pixels)
    ints = np.array([1, -2, 70000], dtype=np.int32)
    (tmp_path / "ints").write_bytes(bytes([0, 0, 0x0C, 1]) + np.array([3], ">u4").tobytes() + ints.astype(">i4").tobytes())
    np.testing.assert_array_equal(data.read_idx(tmp_path / "ints"), ints)


def test_idx_errors(tmp_path):
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    data.write_idx(tmp_path / "a", a)
    raw = (tmp_path / "a").read_bytes()
    (tmp_path / "short").write_bytes(raw[:-1])
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(tmp_path / "short")
    (tmp_path / "long").write_bytes(raw + b"\0")
    with pytest.raises(ValueError, match="trailing"):
        data.read_idx(tmp_path / "long")
    (tmp_path / "magic").write_bytes(b"\x01\x02" + raw[2:])
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "magic")
    (tmp_path / "code").write_bytes(raw[:2] + b"\x07" + raw[3:])
    with pytest.raises(ValueError, match="type code"):
        data.read_idx(tmp_path / "code")
    (tmp_path / "hdr").write_bytes(raw[:6])
    with pytest.raises(ValueError, match="header"):
        data.read_idx(tmp_path / "hdr")
    gz = gzip.compress(raw)
    (tmp_path / "bad.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(ValueError, match="gzip"):
        data.read_idx(tmp_path / "bad.gz")
    with pytest.raises(TypeError, match="dtype"):
        data.write_idx(tmp_path / "b", np.zeros(3, dtype=np.uint16))


def test_load_idx_dataset(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(11, 4, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=11).astype(np.uint8)
    data.write_idx(tmp_path / "images.gz", images)
    data.write_idx(tmp_path / "labels", labels)
    x, y = data.load_idx_dataset(tmp_path / "images.gz", tmp_path / "labels")
    assert x.dtype == np.float32 and y.dtype == np.int64 and x.shape == (11, 12)
    np.testing.assert_allclose(x, images.reshape(11, 12).astype(np.float64) / 255.0, rtol=1e-7)
    np.testing.assert_array_equal(y, labels)
    x2, _ = data.load_idx_dataset(tmp_path / "images.gz", tmp_path / "labels", flatten=False, normalize=False)
    assert x2.shape == (11, 1, 4, 3)
    np.testing.assert_array_equal(x2[:, 0], images.astype(np.float32))
    data.write_idx(tmp_path / "few", labels[:5])
    with pytest.raises(ValueError, match="11 images but .* 5 labels"):
        data.load_idx_dataset(tmp_path / "images.gz", tmp_path / "few")
    # float IDX data (already scaled signals) is taken as it is: only uint8 pixels are divided by 255
    signals = rng.standard_normal((11, 40)).astype(np.float32)
    data.write_idx(tmp_path / "signals", signals)
    xs, _ = data.load_idx_dataset(tmp_path / "signals", tmp_path / "labels")
    np.testing.assert_array_equal(xs, signals)


def test_scale_matches_formula():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, size=(13, 7)).astype(np.float32)
    x64 = x.astype(np.float64)
    for lo, hi in ((0.0, 1.0), (-1.0, 1.0)):
        s = data.scale(x, lo, hi)
        assert s.dtype == np.float32
        ref = (x64 - x64.min()) / (x64.max() - x64.min()) * (hi - lo) + lo
        np.testing.assert_allclose(s, ref, rtol=1e-6, atol=1e-6)
        assert s.min() == pytest.approx(lo, abs=1e-6) and s.max() == pytest.approx(hi, abs=1e-6)
    # test data transformed with the training range
    xt = rng.normal(size=(5, 7)).astype(np.float32)
    st = data.scale(xt, -1, 1, data_min=x.min(), data_max=x.max())
    np.testing.assert_allclose(st, (xt.astype(np.float64) - x64.min()) / (x64.max() - x64.min()) * 2 - 1,
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(data.scale(np.full(4, 2.5)), np.zeros(4))
    pixels = np.array([0, 16, 8], dtype=np.uint8)
    np.testing.assert_allclose(data.scale(pixels, data_min=0, data_max=16), [0.0, 1.0, 0.5])
    with pytest.raises(ValueError, match="hi > lo"):
        data.scale(x, 1.0, 0.0)


def test_standardize_matches_formula_and_reuses_stats():
    rng = np.random.default_rng(2)
    x = rng.normal(5.0, 3.0, size=(17, 5)).astype(np.float32)
    z, mean, std = data.standardize(x)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(z, (x64 - x64.mean(0)) / (x64.std(0) + 1e-8), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z.astype(np.float64).mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(z.astype(np.float64).std(0), 1.0, rtol=1e-5)
    xt = rng.normal(size=(3, 5)).astype(np.float32)
    zt, m2, s2 = data.standardize(xt, mean, std)
    np.testing.assert_allclose(zt, (xt - mean) / (std + 1e-8), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(m2, mean)
    with pytest.raises(ValueError, match="both mean and std"):
        data.standardize(x, mean=mean)


@pytest.mark.parametrize("n,bs", [(1, 1), (7, 3), (10, 5), (13, 20)])
def test_batches_cover_every_sample_once(n, bs):
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    y = np.arange(n)
    seen = []
    for xb, yb in data.batches(x, y, bs, shuffle=True, rng=np.random.default_rng(5)):
        assert len(xb) == len(yb) <= bs
        np.testing.assert_array_equal(xb[:, 0], 2 * yb)
        seen.extend(yb.tolist())
    assert sorted(seen) == list(range(n))
    assert seen == np.random.default_rng(5).permutation(n).tolist()
    ordered = [yb.tolist() for _, yb in data.batches(x, y, bs)]
    assert sum(ordered, []) == list(range(n))
    dropped = list(data.batches(x, y, bs, drop_last=True))
    assert len(dropped) == n // bs and all(len(b[0]) == bs for b in dropped)


def test_dataloader_reshuffles_each_epoch():
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    loader = data.DataLoader(x, np.arange(20), batch_size=6, shuffle=True, seed=0)
    assert len(loader) == 4
    e1 = np.concatenate([yb for _, yb in loader])
    e2 = np.concatenate([yb for _, yb in loader])
    assert sorted(e1) == sorted(e2) == list(range(20)) and not np.array_equal(e1, e2)
    with pytest.raises(ValueError, match="batch_size"):
        data.DataLoader(x, batch_size=0)
    with pytest.raises(ValueError, match="same number of samples"):
        list(data.batches(x, np.arange(3)))


def test_load_digits_split():
    sklearn = pytest.importorskip("sklearn.datasets")
    (x, y), (xt, yt) = data.load_digits()
    bunch = sklearn.load_digits()
    assert x.dtype == xt.dtype == np.float32 and y.dtype == yt.dtype == np.int64
    assert len(x) + len(xt) == len(bunch.target) and abs(len(xt) - 0.2 * len(bunch.target)) <= 10
    assert x.min() >= 0.0 and x.max() == 1.0 and x.shape[1] == 64
    # the split is a permutation of the original samples, stratified by class
    both = np.concatenate([x, xt]) * 16
    key = lambda a: sorted(map(bytes, np.rint(a).astype(np.uint8)))  # noqa: E731
    assert key(both) == key(bunch.data)
    np.testing.assert_allclose(np.bincount(yt, minlength=10) / np.bincount(bunch.target), 0.2, atol=0.02)
    (x2, _), _ = data.load_digits()
    np.testing.assert_array_equal(x, x2)
    (x3, _), _ = data.load_digits(flatten=False)
    assert x3.shape == (len(x), 1, 8, 8)


def test_load_mnist1d():
    pytest.importorskip("mnist1d")
    state = np.random.get_state()
    (x, y), (xt, yt) = data.load_mnist1d(num_samples=500)
    assert np.random.get_state()[1].tolist() == state[1].tolist()  # global RNG untouched
    assert x.shape == (400, 40) and xt.shape == (100, 40) and x.dtype == np.float32 and y.dtype == np.int64
    assert set(np.unique(y)) <= set(range(10))
    (x2, _), _ = data.load_mnist1d(num_samples=500, flatten=False)
    np.testing.assert_array_equal(x2[:, 0], x)


def test_load_mnist1d_missing_package_message(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(ImportError, match="pip install mnist1d"):
        data.load_mnist1d()


def test_synthetic_mnist():
    x, y = data.make_synthetic_mnist(257, seed=4)
    assert x.shape == (257, 784) and x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() >= 0 and x.max() <= 1 and set(np.unique(y)) <= set(range(10))
    x2, y2 = data.make_synthetic_mnist(257, seed=4)
    np.testing.assert_array_equal(x, x2)
    assert data.make_synthetic_mnist(0)[0].shape == (0, 784)
    # learnable: each sample is closer to its own class mean than to the others (mostly)
    means = np.stack([x[y == c].mean(0) for c in range(10)])
    d = ((x[:, None, :] - means[None]) ** 2).sum(-1)
    assert (d.argmin(1) == y).mean() > 0.9


@pytest.mark.parametrize("n, test_size, stratify, empty", [(16, 0.1, True, "test"), (16, 0.9, True, "training"),
                                                            (3, 0.1, False, "test")])
def test_train_test_split_refuses_a_split_that_leaves_a_part_empty(n, test_size, stratify, empty):
    x = np.arange(n, dtype=np.float32)[:, None]
    y = np.repeat(np.arange(4), 4)[:n]
    with pytest.raises(ValueError, match=f"the split leaves no {empty} samples \\({n} in all; "
                                         f"test_size={test_size:g}\\)"):
        data.train_test_split(x, y, test_size=test_size, stratify=stratify)


def test_train_test_split_stratifies_one_hot_labels_by_row():
    y = np.repeat(np.arange(4), 4)
    x = np.arange(16, dtype=np.float32)[:, None]
    (xa, ya), (xb, yb) = data.train_test_split(x, np.eye(4, dtype=np.float32)[y], test_size=0.25)
    assert xa.shape == (12, 1) and ya.shape == (12, 4) and xb.shape == (4, 1) and yb.shape == (4, 4)
    assert sorted(yb.argmax(1).tolist()) == [0, 1, 2, 3]  # one test sample of each class
    for xs, ys in ((xa, ya), (xb, yb)):  # each label row stays with its sample
        assert np.array_equal(ys.argmax(1), xs[:, 0].astype(int) // 4)


def test_dataloader_shuffles_from_the_seeded_generator_by_default():
    import fusetrain

    def first_epoch():
        fusetrain.manual_seed(0)
        return next(iter(data.DataLoader(np.arange(64), np.arange(64), batch_size=64, shuffle=True)))[1].tolist()
    assert first_epoch() == first_epoch()


def test_idx_reader_turns_corrupt_gzip_and_huge_headers_into_clear_errors(tmp_path):
    path = tmp_path / "x.idx.gz"
    data.write_idx(path, np.arange(600, dtype=np.uint8).reshape(20, 30) % 7)
    raw = bytearray(path.read_bytes())
    raw[12:30] = bytes(b ^ 0xFF for b in raw[12:30])
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt or truncated gzip data"):
        data.read_idx(path)
    huge = tmp_path / "huge.idx"
    huge.write_bytes(bytes([0, 0, 0x08, 4]) + (65535).to_bytes(4, "big") * 4)
    with pytest.raises(ValueError, match=r"should hold 18445618199572250645 bytes, it holds 20 \(truncated\)"):
        data.read_idx(huge)
