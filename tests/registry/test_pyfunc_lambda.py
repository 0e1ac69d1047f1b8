"""The pyfunc refuses a lambda outside the router set's range, naming the range (issue 11, item 4)."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from causal_router.errors import InvalidParameterError
from causal_router.registry.pyfunc import INTERVAL_METHOD, RouterModel, features_frame


@pytest.fixture(scope="module")
def model(routerset_dir):
    m = RouterModel()

    class Ctx:
        artifacts = {"routers": str(routerset_dir)}
        model_config = {"method": INTERVAL_METHOD, "lam": 0.0}

    m.load_context(Ctx())
    return m


@pytest.mark.parametrize("lam", [-1.0, math.nan, math.inf, -math.inf, 1e12, "abc"])
def test_pyfunc_refuses_bad_lambda(model, problem, lam):
    with pytest.raises(InvalidParameterError, match=r"allowed range \[0, 2000\]"):
        model.predict(None, features_frame(problem["holdout"].X[:3]), params={"lam": lam})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lam=st.floats(allow_nan=True, allow_infinity=True))
def test_pyfunc_any_lambda_routes_or_is_refused(model, problem, lam):
    X = problem["holdout"].X[:4]
    low, high = model.routerset.lambda_range(INTERVAL_METHOD)  # the interval model answers its grid
    if math.isfinite(lam) and low <= lam <= high:
        out = model.predict(None, features_frame(X), params={"lam": lam})
        assert len(out) == 4 and set(out["model"]) <= set(model.routerset.models)
        assert np.all((out["model_index"] >= 0) & (out["model_index"] < len(model.routerset.models)))
    else:
        with pytest.raises(InvalidParameterError, match="allowed range"):
            model.predict(None, features_frame(X), params={"lam": lam})
