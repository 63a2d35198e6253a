"""Ready datasets: scikit-learn's bundled 8x8 digits, procedural MNIST-1D (optional ``mnist1d``
package) and synthetic MNIST-shaped data for benchmarks. Nothing is ever downloaded."""
from __future__ import annotations

import numpy as np

from ..ops import _check


def train_test_split(x, y, test_size=0.2, seed=0, stratify=True):
    """Split (x, y) into ((x_train, y_train), (x_test, y_test)) with a fixed seed.

    With ``stratify`` each class keeps (up to rounding) the same share in both parts; the
    order inside each part is shuffled.
    """
    test_size = _check.number(test_size, "test_size", lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same number of samples, got {len(x)} and {len(y)}")
    rng = np.random.default_rng(seed)
    if stratify:
        test_idx = []
        # classes by row: one-hot or other 2-D labels are stratified by their rows
        labels = np.unique(y.reshape(len(y), -1), axis=0, return_inverse=True)[1].reshape(-1) if y.ndim > 1 else y
        for c in np.unique(labels):
            idx = np.flatnonzero(labels == c)
            rng.shuffle(idx)
            test_idx.append(idx[:int(round(len(idx) * test_size))])
        test_idx = np.concatenate(test_idx) if test_idx else np.empty(0, dtype=np.int64)
    else:
        test_idx = rng.permutation(len(y))[:int(round(len(y) * test_size))]
    for part, count in (("test", len(test_idx)), ("training", len(y) - len(test_idx))):
        if count == 0 and len(y):
            raise ValueError(f"the split leaves no {part} samples ({len(y)} in all; test_size={test_size:g})")
    mask = np.zeros(len(y), dtype=bool)
    mask[test_idx] = True
    train_idx = rng.permutation(np.flatnonzero(~mask))
    test_idx = rng.permutation(np.flatnonzero(mask))
    return (x[train_idx], y[train_idx]), (x[test_idx], y[test_idx])


def load_digits(test_size=0.2, seed=0, flatten=True):
    """scikit-learn's 1,797 8x8 handwritten digits, split into train and test with a fixed seed.

    Returns ``((x_train, y_train), (x_test, y_test))``: x float32 in [0, 1] (pixel values are
    0..16, divided by 16), shape (N, 64), or (N, 1, 8, 8) with ``flatten=False`` for CNNs;
    y int64 class labels 0..9. The split is stratified by class.
    """
    try:
        from sklearn.datasets import load_digits as _sk_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("load_digits needs scikit-learn (it ships the digits data): pip install scikit-learn") \
            from exc
    bunch = _sk_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    if not flatten:
        x = x.reshape(-1, 1, 8, 8)
    return train_test_split(x, y, test_size=test_size, seed=seed)


def load_mnist1d(num_samples=5000, train_split=0.8, seed=42, flatten=True):
    """MNIST-1D (Greydanus 2020): 40-sample 1-D signals of the ten digit templates, generated
    procedurally by the ``mnist1d`` package (optional extra: ``pip install mnist1d``).

    Uses the package's generator with its default arguments (except the three given here), so
    nothing is downloaded. Returns ``((x_train, y_train), (x_test, y_test))`` with x float32 of
    shape (N, 40), or (N, 1, 40) with ``flatten=False`` for 1-D CNNs, and y int64. NumPy's
    global random state, which the generator seeds, is restored afterwards.
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        raise ImportError("load_mnist1d needs the optional 'mnist1d' package, which generates the data "
                          "procedurally: pip install mnist1d") from exc
    num_samples = _check.integer(num_samples, "num_samples (one per class at least)", lo=10)
    train_split = _check.number(train_split, "train_split", lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = int(num_samples), train_split, int(seed)
    saved = np.random.get_state()
    try:
        ds = make_dataset(args)
    finally:
        np.random.set_state(saved)
    x, xt = ds["x"].astype(np.float32), ds["x_test"].astype(np.float32)
    y, yt = ds["y"].astype(np.int64), ds["y_test"].astype(np.int64)
    if not flatten:
        x, xt = x[:, None, :], xt[:, None, :]
    return (np.ascontiguousarray(x), y), (np.ascontiguousarray(xt), yt)


def make_synthetic_mnist(n=4096, seed=0, num_classes=10, noise=0.35):
    """MNIST-shaped synthetic data: ``n`` samples of 784 features in [0, 1] (float32) with int64
    labels. Each class is a random 28x28 blob pattern; samples are the pattern plus noise,
    clipped to [0, 1], so the task is learnable but not trivial. For benchmarks and tests."""
    n = _check.integer(n, "n", lo=0)
    num_classes = _check.integer(num_classes, "num_classes", lo=1)
    rng = np.random.default_rng(seed)
    protos = (rng.random((num_classes, 784)) < 0.2).astype(np.float32)
    y = rng.integers(0, num_classes, size=n).astype(np.int64)
    x = protos[y] * rng.uniform(0.5, 1.0, size=(n, 1)).astype(np.float32)
    x += rng.normal(0.0, noise, size=(n, 784)).astype(np.float32)
    np.clip(x, 0.0, 1.0, out=x)
    return x, y
