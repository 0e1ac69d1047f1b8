"""Pseudo-outcomes and the clipping report (docs/architecture.md, Method step 2), on hand-computed examples."""

import numpy as np
import pytest

from causal_router.causal.crossfit import Nuisances
from causal_router.causal.scores import ClipReport, Utilities, clip_report, pseudo_outcomes, utilities

# three rows, two models
T = np.array([0, 1, 0])
Y = np.array([1.0, 0.0, 0.7])
MU = np.array([[0.6, 0.4], [0.2, 0.8], [0.5, 0.5]])
E = np.array([0.5, 0.25, 0.02])


def test_dr_hand_computed():
    G = pseudo_outcomes(T, Y, MU, E, "dr")
    expected = np.array([
        [0.6 + (1.0 - 0.6) / 0.5, 0.4],    # 1.4
        [0.2, 0.8 + (0.0 - 0.8) / 0.25],   # -2.4
        [0.5 + (0.7 - 0.5) / 0.02, 0.5],   # 10.5
    ])
    np.testing.assert_allclose(G, expected)


def test_dr_with_clip_raises_small_propensities_to_the_clip():
    G = pseudo_outcomes(T, Y, MU, E, "dr", clip=0.1)
    expected = np.array([[1.4, 0.4], [0.2, -2.4], [0.5 + 0.2 / 0.1, 0.5]])  # only row 2 (e=0.02) clipped
    np.testing.assert_allclose(G, expected)


def test_ipw_hand_computed():
    np.testing.assert_allclose(pseudo_outcomes(T, Y, MU, E, "ipw"), [[2.0, 0.0], [0.0, 0.0], [35.0, 0.0]])
    np.testing.assert_allclose(pseudo_outcomes(T, Y, MU, E, "ipw", clip=0.1), [[2.0, 0.0], [0.0, 0.0], [7.0, 0.0]])


def test_dm_is_the_outcome_model_and_a_copy():
    G = pseudo_outcomes(T, Y, MU, E, "dm")
    np.testing.assert_array_equal(G, MU)
    G[0, 0] = 99.0
    assert MU[0, 0] == 0.6
    # DR does not modify its input either
    pseudo_outcomes(T, Y, MU, E, "dr")
    assert MU[0, 0] == 0.6 and MU[2, 0] == 0.5


def test_dr_with_exact_outcome_model_has_no_correction():
    mu = MU.copy()
    mu[np.arange(3), T] = Y
    np.testing.assert_allclose(pseudo_outcomes(T, Y, mu, E, "dr"), mu)


def test_unknown_estimator_raises():
    with pytest.raises(ValueError, match="unknown estimator"):
        pseudo_outcomes(T, Y, MU, E, "snips")


def test_clip_report_hand_computed():
    t = np.array([0, 1, 0, 0, 1])
    e = np.array([0.5, 0.25, 0.02, 0.05, 0.8])
    r = clip_report(t, e, n_arms=3, clip=0.1, models=["a", "b", "c"])
    assert isinstance(r, ClipReport)
    assert r.clip == 0.1
    np.testing.assert_array_equal(r.n_logged, [3, 2, 0])
    np.testing.assert_allclose(r.fraction_clipped, [2 / 3, 0.0, 0.0])
    np.testing.assert_allclose(r.min_propensity[:2], [0.02, 0.25])
    assert np.isnan(r.min_propensity[2])
    # clipped weights: model a: 1/0.5, 1/0.1, 1/0.1 = 2, 10, 10; model b: 4, 1.25
    np.testing.assert_allclose(r.ess, [22.0**2 / (4 + 100 + 100), 5.25**2 / (16 + 1.5625), 0.0])
    recs = r.to_records()
    assert [x["model"] for x in recs] == ["a", "b", "c"]
    assert recs[0]["n_logged"] == 3 and recs[0]["fraction_clipped"] == pytest.approx(2 / 3)
    text = r.summary()
    assert "0.1" in text and "a:" in text and "66.7%" in text


def test_clip_report_without_clipping_ess():
    # equal weights -> ESS equals the number of logged rows; clip 0 clips nothing
    t = np.array([0, 0, 0, 1])
    e = np.array([0.4, 0.4, 0.4, 0.6])
    r = clip_report(t, e, n_arms=2, clip=0.0)
    np.testing.assert_allclose(r.ess, [3.0, 1.0])
    np.testing.assert_array_equal(r.fraction_clipped, [0.0, 0.0])
    assert [x["model"] for x in r.to_records()] == ["0", "1"]


@pytest.fixture()
def nuisances():
    rng = np.random.default_rng(3)
    n, K = 40, 3
    t = rng.integers(0, K, n)
    a = rng.random(n)
    c = rng.random(n) * 1e-3
    nu = Nuisances(propensity=np.full((n, K), 1 / K), logged_propensity=rng.uniform(0.05, 0.9, n),
                   quality=rng.random((n, K)), cost=rng.random((n, K)) * 1e-3)
    return t, a, c, nu


@pytest.mark.parametrize("estimator", ["dm", "ipw", "dr"])
def test_utilities_are_linear_in_lambda(nuisances, estimator):
    t, a, c, nu = nuisances
    U = utilities(t, a, c, nu, estimator, clip=0.1)
    assert isinstance(U, Utilities)
    np.testing.assert_allclose(U.quality, pseudo_outcomes(t, a, nu.quality, nu.logged_propensity, estimator, 0.1))
    np.testing.assert_allclose(U.cost, pseudo_outcomes(t, c, nu.cost, nu.logged_propensity, estimator, 0.1))
    for lam in (0.0, 1.0, 250.0, 1e4):
        np.testing.assert_allclose(U.at(lam), U.quality - lam * U.cost)
        # one pass serves every lambda: the pseudo-outcome of the utility equals the utility of pseudo-outcomes
        direct = pseudo_outcomes(t, a - lam * c, nu.quality - lam * nu.cost, nu.logged_propensity, estimator, 0.1)
        np.testing.assert_allclose(U.at(lam), direct, rtol=1e-10, atol=1e-10)


def test_cost_estimator_defaults_to_estimator_and_can_be_dm(nuisances):
    t, a, c, nu = nuisances
    U = utilities(t, a, c, nu, "dr", cost_estimator="dm")
    np.testing.assert_array_equal(U.cost, nu.cost)
    np.testing.assert_allclose(U.quality, pseudo_outcomes(t, a, nu.quality, nu.logged_propensity, "dr"))
    U2 = utilities(t, a, c, nu, "dr")
    assert not np.allclose(U2.cost, nu.cost)
