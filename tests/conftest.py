"""pytest setup: every test starts from the fused backend and a fixed global seed; NumPy's BLAS
runs on one thread; under CI=true the PyTorch references must be there."""
import os

import pytest

import fusetrain


def pytest_configure(config):
    # Locally the parity tests skip without torch; CI must not pass by skipping them.
    if os.environ.get("CI") == "true":
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            raise pytest.UsageError(f"CI=true but torch cannot be imported ({exc}): the PyTorch parity tests "
                                    "would be skipped; install the test extra (pip install '.[test]')") from exc


@pytest.fixture(autouse=True)
def _fresh_state():
    fusetrain.backend.set_backend("fused")
    fusetrain.manual_seed(1234)
    yield
    fusetrain.backend.set_backend("fused")


@pytest.fixture(autouse=True, scope="session")
def _one_blas_thread():
    # The tests' NumPy references call OpenBLAS between our kernels; on a 2-core machine its
    # threads and our pool's threads (which spin briefly between kernels) would contend for the
    # cores. Correctness does not depend on the BLAS thread count.
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield
