"""The routers' utility posterior and the probability that each model is the best (Thompson exploration)."""

import numpy as np
import pytest

from causal_router.policy.posterior import ArmPosterior, prob_best


def _monte_carlo(mean, sd, n=200_000, seed=0):
    draws = mean[None] + sd * np.random.default_rng(seed).standard_normal((n, *mean.shape))
    win = draws.argmax(2)
    return np.stack([(win == t).mean(0) for t in range(mean.shape[1])], 1)


def test_prob_best_matches_monte_carlo():
    rng = np.random.default_rng(3)
    mean = rng.normal(size=(6, 5)) * 0.3
    sd = rng.uniform(0.05, 0.8, size=5)
    T = prob_best(mean, sd)
    np.testing.assert_allclose(T.sum(1), 1.0)
    np.testing.assert_allclose(T, _monte_carlo(mean, sd), atol=0.01)


def test_prob_best_limits():
    # equal means and spreads: every model equally likely; a clear winner with tiny spread: certain
    np.testing.assert_allclose(prob_best(np.zeros((2, 4)), np.ones(4)), 0.25, atol=1e-6)
    T = prob_best(np.array([[1.0, 0.0, -1.0]]), np.full(3, 1e-3))
    np.testing.assert_allclose(T, [[1.0, 0.0, 0.0]], atol=1e-9)
    # a model with a lower mean but a wide spread keeps a real chance; with a narrow one it has none
    wide = prob_best(np.array([[0.7, 0.6]]), np.array([0.01, 0.3]))
    narrow = prob_best(np.array([[0.7, 0.6]]), np.array([0.01, 0.01]))
    assert 0.3 < wide[0, 1] < 0.5 and narrow[0, 1] < 1e-6


def test_prob_best_refuses_a_bad_spread():
    with pytest.raises(ValueError, match="standard deviations"):
        prob_best(np.zeros((1, 2)), np.array([0.1, 0.0]))


def test_the_spread_shrinks_with_the_logged_rows():
    sd = ArmPosterior(np.array([0.0, 3.0, 99.0]), 0.5).sd()
    np.testing.assert_allclose(sd, [0.5, 0.25, 0.05])
