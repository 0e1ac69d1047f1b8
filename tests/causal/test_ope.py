"""Off-policy evaluation (docs/architecture.md, Method step 6): DM, IPW, SNIPS and DR with confidence intervals."""

import numpy as np
import pytest
from scipy.stats import norm

from causal_router.causal.crossfit import CrossFitter, Nuisances
from causal_router.causal.ope import OPE_ESTIMATORS, Estimate, as_policy, contributions, policy_value, value_difference
from causal_router.data.synthetic import make_synthetic

N, K = 3000, 3
LAMS = (0.0, 1000.0)


@pytest.fixture(scope="module")
def fitted():
    s = make_synthetic(n=N, d=4, n_models=K, confounding=2.0, separation=4.0, seed=0)
    t = s.treatment
    a = s.logs["score"].to_numpy(float)
    c = s.logs["cost"].to_numpy(float)
    tin = s.logs["input_tokens"].to_numpy(float)
    cf = CrossFitter(cv=5, propensity="logged", random_state=0)
    cf.fit(s.X, t, a, c, tin, logged_propensity=s.logs["propensity"].to_numpy(float))
    return s, t, a, c, cf.nuisances_


@pytest.mark.parametrize("lam", LAMS)
@pytest.mark.parametrize("estimator", ["ipw", "snips", "dr"])
def test_weighted_estimators_cover_the_truth(fitted, estimator, lam):
    s, t, a, c, nu = fitted
    pol = s.optimal_policy(lam)
    truth = s.value(pol, lam)
    est = policy_value(pol, t, a, c, nu, lam, estimator)
    assert est.estimator == estimator and est.n == N
    assert 0 < est.se < 0.05
    # a 3-standard-error interval (99.7%) around the estimate contains the truth
    assert abs(est.value - truth) < 3 * est.se, (est, truth)


@pytest.mark.parametrize("lam", LAMS)
def test_dm_close_to_truth(fitted, lam):
    s, t, a, c, nu = fitted
    pol = s.optimal_policy(lam)
    est = policy_value(pol, t, a, c, nu, lam, "dm")
    # DM's interval ignores the outcome model's bias: only a tolerance is meaningful
    assert abs(est.value - s.value(pol, lam)) < 0.05


@pytest.mark.parametrize("estimator", OPE_ESTIMATORS)
def test_interval_contains_estimate(fitted, estimator):
    s, t, a, c, nu = fitted
    est = policy_value(s.optimal_policy(0.0), t, a, c, nu, 0.0, estimator, alpha=0.1)
    assert isinstance(est, Estimate)
    assert est.ci_low < est.value < est.ci_high
    z = norm.ppf(0.95)
    assert est.ci_high - est.value == pytest.approx(z * est.se)
    assert est.value - est.ci_low == pytest.approx(z * est.se)
    wider = policy_value(s.optimal_policy(0.0), t, a, c, nu, 0.0, estimator, alpha=0.01)
    assert wider.ci_high - wider.ci_low > est.ci_high - est.ci_low
    assert set(est.to_dict()) == {"estimator", "value", "se", "ci_low", "ci_high", "n"}


def test_estimators_rank_good_above_bad(fitted):
    s, t, a, c, nu = fitted
    best = s.optimal_policy(0.0)
    worst = s.utility(0.0).argmin(1)
    for e in OPE_ESTIMATORS:
        assert policy_value(best, t, a, c, nu, 0.0, e).value > policy_value(worst, t, a, c, nu, 0.0, e).value + 0.2


def test_value_difference_with_itself_is_zero(fitted):
    s, t, a, c, nu = fitted
    pol = s.optimal_policy(0.0)
    d = value_difference(pol, pol, t, a, c, nu, 0.0)
    assert d.value == 0.0 and d.se == 0.0
    assert d.ci_low == 0.0 and d.ci_high == 0.0


def test_value_difference_is_paired_dr_difference(fitted):
    s, t, a, c, nu = fitted
    pa, pb = s.optimal_policy(0.0), np.zeros(N, dtype=int)
    d = value_difference(pa, pb, t, a, c, nu, 0.0)
    va = policy_value(pa, t, a, c, nu, 0.0, "dr")
    vb = policy_value(pb, t, a, c, nu, 0.0, "dr")
    assert d.value == pytest.approx(va.value - vb.value)
    assert d.se < np.hypot(va.se, vb.se)  # pairing removes shared noise
    true_diff = s.value(pa, 0.0) - s.value(pb, 0.0)
    assert abs(d.value - true_diff) < 3 * d.se


def test_probabilistic_policy_equals_mixture(fitted):
    s, t, a, c, nu = fitted
    uniform = np.full((N, K), 1 / K)
    for e in ("dm", "ipw", "dr"):
        mix = policy_value(uniform, t, a, c, nu, 0.0, e).value
        arms = [policy_value(np.full(N, k), t, a, c, nu, 0.0, e).value for k in range(K)]
        assert mix == pytest.approx(np.mean(arms))


def test_hand_computed_small_example():
    t = np.array([0, 1, 1, 0])
    a = np.array([1.0, 0.0, 1.0, 0.5])
    c = np.array([0.1, 0.2, 0.2, 0.1])
    e = np.array([0.5, 0.25, 0.25, 0.8])
    mu_q = np.array([[0.5, 0.5]] * 4)
    mu_c = np.array([[0.1, 0.2]] * 4)
    nu = Nuisances(propensity=None, logged_propensity=e, quality=mu_q, cost=mu_c)
    pol = np.array([0, 0, 1, 1])
    lam = 1.0
    y = a - lam * c
    w = np.array([1 / 0.5, 0.0, 1 / 0.25, 0.0])
    ipw = policy_value(pol, t, a, c, nu, lam, "ipw")
    assert ipw.value == pytest.approx(np.mean(w * y))
    snips = policy_value(pol, t, a, c, nu, lam, "snips")
    assert snips.value == pytest.approx(np.sum(w * y) / np.sum(w))
    dm = policy_value(pol, t, a, c, nu, lam, "dm")
    assert dm.value == pytest.approx(np.mean([0.4, 0.4, 0.3, 0.3]))
    dr = policy_value(pol, t, a, c, nu, lam, "dr")
    # rows 0 and 2 follow the policy: correction (y - mu) / e
    contrib = np.array([0.4 + (0.9 - 0.4) / 0.5, 0.4, 0.3 + (0.8 - 0.3) / 0.25, 0.3])
    assert dr.value == pytest.approx(contrib.mean())
    np.testing.assert_allclose(contributions(pol, t, a, c, nu, lam, "dr"), contrib)


def test_as_policy_and_unknown_estimator():
    np.testing.assert_array_equal(as_policy(np.array([1, 0]), 3), [[0, 1, 0], [1, 0, 0]])
    p = np.array([[0.2, 0.8]])
    np.testing.assert_array_equal(as_policy(p, 2), p)
    nu = Nuisances(None, np.ones(1), np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="unknown estimator"):
        policy_value(np.array([0]), np.array([0]), np.ones(1), np.ones(1), nu, 0.0, "magic")
