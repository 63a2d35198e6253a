"""pytest setup: every test starts from the fused backend and a fixed global seed."""
import pytest

import fusetrain


@pytest.fixture(autouse=True)
def _fresh_state():
    fusetrain.backend.set_backend("fused")
    fusetrain.manual_seed(1234)
    yield
    fusetrain.backend.set_backend("fused")
