"""Outcome models (docs/architecture.md, Method step 1): token-priced costs, per-arm and pooled regressors."""

import numpy as np
import pytest
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import Ridge

from causal_router.causal.outcome import PerArmRegressor, PooledRidge, TokenCostModel
from causal_router.data.synthetic import make_synthetic

N, K = 1500, 3


@pytest.fixture(scope="module")
def syn():
    return make_synthetic(n=N, d=4, n_models=K, confounding=2.0, separation=4.0, seed=11)


def _fit_args(s):
    return s.X, s.treatment, s.logs["cost"].to_numpy(float), s.logs["input_tokens"].to_numpy(float)


def test_nnls_recovers_exact_prices_and_predicts_every_arm(syn):
    X, t, c, tin = _fit_args(syn)
    m = TokenCostModel().fit(X, t, c, tin)
    assert m.uses_tokens_
    np.testing.assert_allclose(m.prices_[:, 0] * 1e6, np.linspace(1.0, 3.0, K), rtol=1e-8)
    np.testing.assert_array_equal(m.prices_[:, 1], 0.0)  # no output tokens logged
    pred = m.predict(X, tin)
    assert pred.shape == (N, K)
    # counterfactual costs (models not logged on a row) are exact too
    np.testing.assert_allclose(pred, syn.cost, rtol=1e-8, atol=1e-15)


def test_nnls_recovers_input_and_output_prices():
    rng = np.random.default_rng(0)
    n = 600
    X = rng.normal(size=(n, 3))
    t = rng.integers(0, K, n)
    tin = rng.integers(50, 500, n).astype(float)
    tout = rng.integers(10, 800, n).astype(float)
    p_in, p_out = np.array([0.5, 1.0, 3.0]), np.array([1.5, 4.0, 15.0])  # USD / M tokens
    c = (tin * p_in[t] + tout * p_out[t]) / 1e6
    m = TokenCostModel().fit(X, t, c, tin, tout)
    np.testing.assert_allclose(m.prices_ * 1e6, np.column_stack([p_in, p_out]), rtol=1e-6)
    assert m.out_models_ is not None
    assert m.predict_output_tokens(X, tin).shape == (n, K)
    assert np.all(m.predict(X, tin) >= 0)


def test_explicit_price_sheet_is_used(syn):
    X, t, c, tin = _fit_args(syn)
    sheet = np.array([[10.0, 0.0], [20.0, 0.0], [30.0, 0.0]])  # deliberately not the logs' prices
    m = TokenCostModel(prices=sheet).fit(X, t, c, tin)
    np.testing.assert_allclose(m.prices_, sheet / 1e6)
    np.testing.assert_allclose(m.predict(X, tin), tin[:, None] * np.array([10.0, 20.0, 30.0]) / 1e6)


def test_without_tokens_falls_back_to_regression(syn):
    X, t, c, _ = _fit_args(syn)
    m = TokenCostModel().fit(X, t, c)
    assert not m.uses_tokens_
    assert isinstance(m.fallback_, PerArmRegressor)
    pred = m.predict(X)
    assert pred.shape == (N, K) and np.all(pred >= 0)
    # a regression, not exact, but it tracks the true per-arm cost and its ordering by price
    for k in range(K):
        assert np.corrcoef(pred[:, k], syn.cost[:, k])[0, 1] > 0.9
    assert np.all(pred.mean(0)[:-1] < pred.mean(0)[1:])
    assert not np.allclose(pred, syn.cost, rtol=1e-6)


def test_without_tokens_at_prediction_estimates_them_from_features(syn):
    X, t, c, tin = _fit_args(syn)
    m = TokenCostModel().fit(X, t, c, tin)
    est = m.predict_input_tokens(X)
    # the synthetic token count is exp(0.3 x_0): the estimate tracks it
    assert np.corrcoef(est, tin)[0, 1] > 0.95
    assert np.corrcoef(m.predict(X)[:, 0], m.predict(X, tin)[:, 0])[0, 1] > 0.95


def test_missing_arm_raises(syn):
    X, t, c, tin = _fit_args(syn)
    keep = t != 1
    for model in (TokenCostModel(), PerArmRegressor(), PooledRidge()):
        with pytest.raises(ValueError, match=r"\[1\]"):
            model.fit(X[keep], t[keep], c[keep], tin[keep], n_arms=K)


def test_per_arm_regressor_fits_only_logged_rows():
    X = np.zeros((6, 1))
    t = np.array([0, 0, 1, 1, 1, 0])
    y = np.array([1.0, 3.0, 10.0, 20.0, 30.0, 5.0])
    m = PerArmRegressor(DummyRegressor()).fit(X, t, y)
    np.testing.assert_allclose(m.predict(np.zeros((2, 1))), [[3.0, 20.0], [3.0, 20.0]])
    clipped = PerArmRegressor(DummyRegressor(), clip=(0.0, 4.0)).fit(X, t, y)
    np.testing.assert_allclose(clipped.predict(np.zeros((1, 1))), [[3.0, 4.0]])
    assert isinstance(PerArmRegressor().fit(X, t, y).estimators_[0], Ridge)


def test_pooled_ridge_learns_arm_specific_effects(syn):
    s = syn
    a = s.logs["score"].to_numpy(float)
    m = PooledRidge().fit(s.X, s.treatment, a)
    pred = m.predict(s.X)
    assert pred.shape == (N, K) and pred.min() >= 0.0 and pred.max() <= 1.0
    # every arm's prediction tracks that arm's true mean quality, not just a shared trend
    for k in range(K):
        assert np.corrcoef(pred[:, k], s.mean_quality[:, k])[0, 1] > 0.6
    assert (pred.argmax(1) == s.mean_quality.argmax(1)).mean() > 0.6
