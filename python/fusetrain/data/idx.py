"""MNIST-format IDX files (plain or gzip): reader, writer and an (images, labels) loader.

Layout (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code, the number of
dimensions, then each dimension as a big-endian uint32, then the values big-endian, C order.
"""
from __future__ import annotations

import gzip
import math
import os
import zlib

import numpy as np

_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
          0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {np.dtype(v).newbyteorder("=").str: k for k, v in _TYPES.items()}


def _read_bytes(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({exc})") from exc
    return raw


def read_idx(path):
    """Read an IDX file (gzip-compressed or not, detected from its first bytes) into a NumPy
    array in native byte order with the stored dtype and shape."""
    path = os.fspath(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (expected a magic number 0x0000TTNN, got {raw[:4].hex() or 'nothing'})")
    code, ndim = raw[2], raw[3]
    if code not in _TYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02X} (expected one of "
                         f"{', '.join(f'0x{c:02X}' for c in _TYPES)})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, {ndim} dimensions need {header})")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _TYPES[code]
    expected = header + math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if len(raw) != expected:
        raise ValueError(f"{path}: IDX file of shape {shape} and type {dtype.name} should hold {expected} bytes, "
                         f"it holds {len(raw)} ({'truncated' if len(raw) < expected else 'trailing data'})")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def write_idx(path, array):
    """Write ``array`` (uint8, int8, int16, int32, float32 or float64) as an IDX file, gzip
    compressed when ``path`` ends with ``.gz``."""
    path = os.fspath(path)
    a = np.asarray(array)
    key = a.dtype.newbyteorder("=").str
    if key not in _CODES:
        raise TypeError(f"write_idx: dtype {a.dtype} has no IDX type code (use uint8, int8, int16, int32, "
                        "float32 or float64)")
    if a.ndim > 255:
        raise ValueError(f"write_idx: at most 255 dimensions, got {a.ndim}")
    code = _CODES[key]
    header = bytes([0, 0, code, a.ndim]) + np.asarray(a.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(a, dtype=_TYPES[code]).tobytes()
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)


def load_idx_dataset(images_path, labels_path, flatten=True, normalize=True):
    """Load an (images, labels) pair of IDX files, e.g. MNIST's ``train-images-idx3-ubyte.gz``
    and ``train-labels-idx1-ubyte.gz``. Returns (x float32, y int64): uint8 images divided by 255
    when ``normalize`` (pixels to [0, 1]; other dtypes are converted unscaled), flattened to (N, H*W) when ``flatten``, else
    (N, 1, H, W)."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim < 2:
        raise ValueError(f"{images_path}: expected images with a sample axis and pixels, got shape {images.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{labels_path}: expected a 1-D array of labels, got shape {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    x = images.astype(np.float32)
    if normalize and images.dtype == np.uint8:  # pixels 0..255; float IDX data is taken as it is
        x /= 255.0
    if flatten:
        x = x.reshape(len(x), -1)
    elif x.ndim == 3:
        x = x[:, None]
    return np.ascontiguousarray(x), labels.astype(np.int64)
