"""pytest setup: every test starts from the fused backend and a fixed global seed; NumPy's BLAS
runs on one thread."""
import pytest

import fusetrain


@pytest.fixture(autouse=True)
def _fresh_state():
    fusetrain.backend.set_backend("fused")
    fusetrain.manual_seed(1234)
    yield
    fusetrain.backend.set_backend("fused")


@pytest.fixture(autouse=True, scope="session")
def _one_blas_thread():
    # The tests' NumPy references call OpenBLAS between our kernels; on a 2-core machine its
    # threads and our OpenMP threads (which spin briefly between kernels) would contend for the
    # cores. Correctness does not depend on the BLAS thread count.
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield
