"""The exploring policy: propensities are the probabilities draws actually follow, every model keeps
its floor, exploration goes where the router is unsure or the logs are thin."""

import numpy as np
import pytest
from scipy.stats import chisquare

from causal_router.policy.exploration import ExplorationPolicy
from causal_router.policy.posterior import ArmPosterior, prob_best

SCORES = np.array([[2.0, 1.9, -1.0, 0.0]])  # model 0 chosen, model 1 a close runner-up


def test_explore_zero_is_the_deterministic_router():
    P = ExplorationPolicy(explore=0.3, floor=0.05).probabilities(SCORES, explore=0.0)
    np.testing.assert_array_equal(P, [[1.0, 0.0, 0.0, 0.0]])
    idx, prop = ExplorationPolicy.draw(P, np.random.default_rng(0))
    assert idx.tolist() == [0] and prop.tolist() == [1.0]


def test_rows_sum_to_one_and_keep_the_floor():
    rng = np.random.default_rng(1)
    S = rng.normal(size=(500, 5)) * rng.uniform(0.01, 100, size=(500, 1))
    pol = ExplorationPolicy(explore=0.1, floor=0.03)
    for e in (0.01, 0.1, 0.5, 1.0):  # a rate below (K - 1) * floor is raised to it
        P = pol.probabilities(S, explore=e)
        np.testing.assert_allclose(P.sum(1), 1.0)
        assert P.min() >= 0.03 - 1e-12
        best = P[np.arange(len(S)), S.argmax(1)]
        np.testing.assert_allclose(best, 1 - min(max(e, 4 * 0.03), 1 - 0.03))


def test_exploration_goes_to_the_close_runner_up_and_to_thin_logs():
    P = ExplorationPolicy(explore=0.2, floor=0.01).probabilities(SCORES)
    assert P[0, 1] > P[0, 3] > P[0, 2]  # ordered by how close each is to the router's choice
    # the same scores, but model 2 has hardly been logged: it gets more of the exploration
    thin = ExplorationPolicy(explore=0.2, floor=0.01).probabilities(SCORES, counts=[1000, 1000, 0, 1000])
    assert thin[0, 2] > 3 * P[0, 2]
    assert thin[0, 0] == pytest.approx(0.8)


def test_empirical_frequencies_match_the_reported_propensities():
    """Chi-square goodness of fit of 20,000 seeded draws against the propensities they report."""
    pol = ExplorationPolicy(explore=0.25, floor=0.02)
    P = pol.probabilities(np.repeat(SCORES, 20_000, axis=0))
    idx, prop = pol.draw(P, np.random.default_rng(7))
    np.testing.assert_allclose(prop, P[np.arange(len(P)), idx])  # the reported propensity is P of the draw
    observed = np.bincount(idx, minlength=4)
    expected = P[0] * len(idx)
    assert chisquare(observed, expected).pvalue > 0.001
    # and a wrong distribution is rejected at the same size (the test has power)
    wrong = np.full(4, len(idx) / 4)
    assert chisquare(observed, wrong).pvalue < 1e-6


def test_draws_are_reproducible_with_a_seed():
    P = ExplorationPolicy(explore=0.5, floor=0.05).probabilities(np.random.default_rng(0).normal(size=(200, 3)))
    a = ExplorationPolicy.draw(P, np.random.default_rng(42))[0]
    b = ExplorationPolicy.draw(P, np.random.default_rng(42))[0]
    c = ExplorationPolicy.draw(P, np.random.default_rng(43))[0]
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


@pytest.mark.parametrize("kwargs, match", [({"explore": 1.5}, "explore"), ({"explore": float("nan")}, "explore"),
                                           ({"floor": -0.1}, "floor"), ({"temperature": 0}, "temperature")])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExplorationPolicy(**kwargs)


def test_a_floor_too_high_for_the_models_is_refused():
    with pytest.raises(ValueError, match="floor"):
        ExplorationPolicy(explore=0.5, floor=0.3).probabilities(SCORES)


def test_a_challenger_gets_the_spread_where_it_disagrees():
    """With a challenger choosing model 2 (the router: model 0), ``challenger_share`` of the spread
    above the floors goes to model 2; where the challenger agrees, nothing changes."""
    plain = ExplorationPolicy(explore=0.2, floor=0.01).probabilities(SCORES)
    full = ExplorationPolicy(explore=0.2, floor=0.01, challenger_share=1.0)
    np.testing.assert_allclose(full.probabilities(SCORES, challenger=np.array([2])), [[0.8, 0.01, 0.18, 0.01]])
    half = ExplorationPolicy(explore=0.2, floor=0.01, challenger_share=0.5).probabilities(
        SCORES, challenger=np.array([2]))
    np.testing.assert_allclose(half[0, 2], 0.01 + 0.17 * (0.5 + 0.5 * (plain[0, 2] - 0.01) / 0.17))
    np.testing.assert_allclose(half.sum(1), 1.0)
    assert half[0, 0] == pytest.approx(0.8) and half.min() >= 0.01
    np.testing.assert_allclose(full.probabilities(SCORES, challenger=np.array([0])), plain)  # agrees
    np.testing.assert_allclose(ExplorationPolicy(explore=0.2, floor=0.01).probabilities(
        SCORES, challenger=np.array([2])), plain)  # share 0: no canary
    np.testing.assert_array_equal(full.probabilities(SCORES, explore=0.0, challenger=np.array([2])),
                                  [[1.0, 0.0, 0.0, 0.0]])


@pytest.mark.parametrize("challenger", [np.array([4]), np.array([-1]), np.array([0.5]), np.array([1, 2])])
def test_a_bad_challenger_is_refused(challenger):
    with pytest.raises(ValueError, match="challenger"):
        ExplorationPolicy(explore=0.2, floor=0.01, challenger_share=1.0).probabilities(SCORES, challenger=challenger)


def test_a_bad_challenger_share_is_refused():
    with pytest.raises(ValueError, match="challenger_share"):
        ExplorationPolicy(challenger_share=1.5)


# -- Thompson exploration ------------------------------------------------------------------------

def _thompson(**kw):
    return ExplorationPolicy(**{"explore": 0.05, "floor": 0.005, "strategy": "thompson", "posterior_scale": 1.0, **kw})


def test_thompson_explores_where_a_thinly_logged_model_may_be_best():
    """Model 1 is a little worse on average. Logged a handful of times, it may still be the best,
    so it gets a large share; logged thousands of times, the router's choice keeps all but ``explore``."""
    mean = np.array([[0.70, 0.65, 0.30]])
    thin = _thompson().probabilities(mean, posterior=(mean, ArmPosterior(np.array([2000.0, 4.0, 2000.0]), 0.4).sd()))
    sure = _thompson().probabilities(mean, posterior=(mean, ArmPosterior(np.array([2000.0, 2000.0, 2000.0]),
                                                                         0.4).sd()))
    for P in (thin, sure):
        np.testing.assert_allclose(P.sum(1), 1.0)
        assert P.min() >= 0.005 - 1e-12
    assert thin[0, 1] > 0.2 and thin[0, 0] < 0.8
    np.testing.assert_allclose(sure[0, 0], 0.95)  # at least `explore` leaves the router's choice
    assert sure[0, 1] > sure[0, 2]  # the runner-up gets the most of it


def test_thompson_gives_the_routers_choice_the_likeliest_best_probability():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(300, 5)) * 0.2
    sd = rng.uniform(0.01, 0.3, size=5)
    P = _thompson(floor=0.0, explore=0.0001).probabilities(mean, posterior=(mean, sd))
    T = prob_best(mean, sd)
    np.testing.assert_allclose(P.sum(1), 1.0)
    np.testing.assert_allclose(P[np.arange(300), mean.argmax(1)], np.minimum(T.max(1), 1 - 0.0001), atol=1e-12)
    # the router's choice is the posterior mean's argmax here: the others keep their Thompson odds
    same = T.argmax(1) == mean.argmax(1)
    np.testing.assert_allclose(P[same], T[same], atol=1e-4)


def test_thompson_without_a_posterior_is_the_spread_and_explore_zero_is_deterministic():
    spread = ExplorationPolicy(explore=0.05, floor=0.005).probabilities(SCORES)
    np.testing.assert_allclose(_thompson().probabilities(SCORES), spread)
    np.testing.assert_array_equal(_thompson().probabilities(SCORES, explore=0.0, posterior=(SCORES, np.ones(4))),
                                  [[1.0, 0.0, 0.0, 0.0]])


@pytest.mark.parametrize("kwargs, match", [({"strategy": "ucb"}, "strategy"),
                                           ({"posterior_scale": 0}, "posterior_scale"),
                                           ({"posterior_scale": float("inf")}, "posterior_scale")])
def test_bad_thompson_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExplorationPolicy(**kwargs)


def test_a_posterior_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="posterior mean"):
        _thompson().probabilities(SCORES, posterior=(np.zeros((2, 4)), np.ones(4)))


def test_pool_probabilities_move_the_policy_onto_the_served_pool():
    """policy/exploration.py:pool_probabilities: a removed model's mass renormalised over the others,
    new models at exactly the cold-start share (lowered to 1/c when c shares exceed 1), rows sum to 1."""
    from causal_router.policy.exploration import pool_probabilities

    P = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    Q = pool_probabilities(P, ["a", "b", "c"], ["a", "b", "new"], {"a": 99, "b": 99}, 0.05, 10)
    np.testing.assert_allclose(Q[:, 2], 0.05)
    np.testing.assert_allclose(Q[:, :2], 0.95 * P[:, :2] / P[:, :2].sum(1, keepdims=True))
    np.testing.assert_allclose(Q.sum(1), 1.0)
    warm = pool_probabilities(P, ["a", "b", "c"], ["a", "b", "new"], {"a": 99, "b": 99, "new": 10}, 0.05, 10)
    np.testing.assert_allclose(warm[:, 2], 0.0)  # enough outcomes: only what the router gives it
    many = pool_probabilities(P, ["a", "b", "c"], ["x", "y", "z"], {}, 0.5, 10)
    np.testing.assert_allclose(many, 1 / 3)  # three cold models at 0.5 each: 1/3 each
    with pytest.raises(ValueError, match="served pool"):
        pool_probabilities(P, ["a", "b", "c"], [])
