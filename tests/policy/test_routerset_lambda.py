"""RouterSet.check_lambda: the one place lambda is range-checked (route, evaluate and the pyfunc call it)."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from causal_router.errors import InvalidParameterError
from causal_router.policy.routerset import LAMBDA_SLACK, RouterSet


def _set(lambdas=(0.0, 100.0, 500.0)):
    return RouterSet(["a", "b"], list(lambdas), {}, "", {})


def test_range_is_zero_to_slack_times_the_grid_top():
    assert _set().lambda_range() == (0.0, LAMBDA_SLACK * 500.0)
    assert _set([0.0]).lambda_range() == (0.0, math.inf)


def test_interval_router_answers_its_grid_interval():
    from causal_router.policy.regret import RMIntervalRouter

    rs = RouterSet(["a", "b"], [100.0, 500.0], {"rm-interval": RMIntervalRouter()}, "", {})
    assert rs.lambda_range("rm-interval") == (100.0, 500.0)
    assert rs.check_lambda(300, "rm-interval") == 300.0
    with pytest.raises(InvalidParameterError, match=r"\[100, 500\]"):
        rs.check_lambda(600, "rm-interval")


@pytest.mark.parametrize("lam", [-1e-9, -5, math.nan, math.inf, -math.inf, 5001, "1e9", None, "x"])
def test_bad_lambdas_are_refused_naming_the_range(lam):
    with pytest.raises(InvalidParameterError) as info:
        _set().check_lambda(lam)
    msg = str(info.value)
    assert "allowed range [0, 5000]" in msg and "0, 100, 500" in msg
    assert isinstance(info.value, ValueError)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_any_float_is_accepted_iff_in_range(lam):
    rs = _set()
    if math.isfinite(lam) and 0 <= lam <= 5000:
        assert rs.check_lambda(lam) == lam
    else:
        with pytest.raises(InvalidParameterError, match="allowed range"):
            rs.check_lambda(lam)
