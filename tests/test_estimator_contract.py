"""The scikit-learn estimator contract, over every router in the registry and every nuisance class:
fit/predict shapes, ``clone``, ``get_params``, determinism under a seed, the number of arms inferred from
the data, ``n_features_in_``, and a clear refusal of wrong shapes."""

import numpy as np
import pytest
from sklearn.base import clone

from causal_router.causal.crossfit import CrossFitter
from causal_router.causal.outcome import PerArmRegressor, PooledRidge, TokenCostModel
from causal_router.causal.propensity import PropensityModel
from causal_router.data.synthetic import make_synthetic
from causal_router.policy.catalog import ROUTERS, get_router
from causal_router.policy.data import build_routing_data

K, D = 3, 4
LAMS = [0.0, 1000.0]
SMALL = {"epochs": 3, "hidden": 16, "finetune_epochs": 2}  # quick networks: the contract, not quality


@pytest.fixture(scope="module")
def synth():
    return make_synthetic(n=600, d=D, n_models=K, seed=3)


def _nuisance_fit(est, s, **kw):
    X, t = s.X, s.treatment
    if isinstance(est, PropensityModel):
        return est.fit(X, t, **kw)
    if isinstance(est, CrossFitter):
        return est.fit(X, t, s.logs["score"].to_numpy(float), s.logs["cost"].to_numpy(float),
                       s.logs["input_tokens"].to_numpy(float), **kw)
    y = s.logs["cost"].to_numpy(float) if isinstance(est, TokenCostModel) else s.logs["score"].to_numpy(float)
    return est.fit(X, t, y, s.logs["input_tokens"].to_numpy(float), **kw)


def _nuisance_predict(est, X, tokens=None):
    if isinstance(est, PropensityModel):
        return est.predict_proba(X)
    if isinstance(est, CrossFitter):
        return est.predict(X, input_tokens=tokens).quality
    return est.predict(X, tokens)


NUISANCES = [PropensityModel(), PerArmRegressor(), PooledRidge(), TokenCostModel(), CrossFitter(cv=3, random_state=0)]


@pytest.mark.parametrize("est", NUISANCES, ids=lambda e: type(e).__name__)
def test_nuisance_contract(est, synth):
    s = synth
    tokens = s.logs["input_tokens"].to_numpy(float)
    assert clone(est).get_params() == est.get_params()
    assert "n_arms" not in est.get_params()  # a data property, learned in fit
    a = _nuisance_fit(clone(est), s)
    assert a.n_arms_ == K and a.n_features_in_ == D
    out = _nuisance_predict(a, s.X[:50], tokens[:50])
    assert out.shape == (50, K) and np.isfinite(out).all()
    # same data, same settings: the same predictions
    np.testing.assert_array_equal(out, _nuisance_predict(_nuisance_fit(clone(est), s), s.X[:50], tokens[:50]))
    # an arm of the model list without rows: kept when the caller names it, or refused by its index
    try:
        wider = _nuisance_fit(clone(est), s, n_arms=K + 1)
    except ValueError as err:
        assert f"[{K}]" in str(err)
    else:
        assert wider.n_arms_ == K + 1 and _nuisance_predict(wider, s.X[:5], tokens[:5]).shape == (5, K + 1)
    with pytest.raises(ValueError, match="X"):
        _nuisance_fit(clone(est), type(s)(**{**s.__dict__, "X": s.X[:, 0]}))
    with pytest.raises(ValueError, match="features"):
        _nuisance_predict(a, s.X[:5, :2], tokens[:5])
    with pytest.raises(ValueError, match="treatment"):
        _nuisance_fit(clone(est), s, n_arms=K - 1)  # a logged arm outside [0, n_arms)


@pytest.fixture(scope="module")
def routing(synth):
    s = synth
    tr, va = s.subset(np.arange(400)), s.subset(np.arange(400, 600))
    return build_routing_data(tr.logs, tr.X, va.logs, va.X, models=s.models, propensity="logged", cv=3)


def _router(name):
    est = get_router(name)
    params = est.get_params()
    return est.set_params(**{k: v for k, v in {**SMALL, "random_state": 0}.items() if k in params})


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_router_contract(name, routing, one_thread):
    est = _router(name)
    assert clone(est).get_params() == est.get_params()
    assert not any("arm" in p for p in est.get_params())  # the arms come from the data
    a = clone(est).fit(routing, LAMS)
    assert a.n_arms_ == K and a.n_features_in_ == D
    X = routing.X_val[:40]
    for lam in (0.0, 500.0, 1000.0):
        pred, proba = a.predict(X, lam), a.predict_proba(X, lam)
        assert pred.shape == (40,) and pred.min() >= 0 and pred.max() < K
        assert proba.shape == (40, K) and np.allclose(proba.sum(1), 1.0)
    b = clone(est).fit(routing, LAMS)
    np.testing.assert_array_equal(a.predict(X, 500.0), b.predict(X, 500.0))
    with pytest.raises(ValueError, match="features"):
        a.predict(X[:, :2], 0.0)
    with pytest.raises(ValueError, match="features"):
        a.predict_proba(X[0], 0.0)
