"""The comparison helper itself: it must fail where the values differ, NaN and infinities
included, or every test built on it could pass on wrong numbers."""
import numpy as np
import pytest

from testutils import assert_close

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("actual,expected", [
    ([NAN], [INF]), ([INF], [NAN]), ([INF], [-INF]), ([-INF], [NAN]), ([1.0, NAN], [1.0, 2.0]),
    ([INF], [1e308]), ([1.0, 2.0], [1.0, 2.1]), ([[0.0]], [0.0])])
def test_differences_are_reported(actual, expected):
    with pytest.raises(AssertionError):
        assert_close(np.array(actual), np.array(expected), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("actual,expected", [
    ([NAN, INF, -INF, 1.0], [NAN, INF, -INF, 1.0 + 1e-7]), ([], []), (np.float32(0.1), 0.1)])
def test_equal_values_pass(actual, expected):
    assert_close(np.asarray(actual), np.asarray(expected), rtol=1e-5, atol=1e-6)


def test_the_message_names_the_first_disagreements():
    with pytest.raises(AssertionError, match=r"non-finite values disagree at \(1,\): inf vs nan"):
        assert_close(np.array([NAN, INF]), np.array([NAN, NAN]), name="y")
