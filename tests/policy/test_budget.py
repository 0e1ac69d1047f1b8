"""Offline calibration (policy/budget.py): on synthetic logs with known costs, the lambda found on one
half of the prompts meets the budget on the other half (true costs, not estimates)."""

import numpy as np
import pytest

from causal_router.causal.nuisances import NuisanceConfig
from causal_router.data.synthetic import make_synthetic
from causal_router.policy.budget import BudgetCalibrator, fill_probabilities, search_grid, smallest_meeting
from causal_router.policy.data import holdout_evidence

PRICES = np.array([1.0, 2.0, 3.0])  # make_synthetic's USD per million tokens, 3 models
LAM_RANGE = (0.0, 20000.0)


class KnownRouter:
    """Quality-minded scores from fixed weights, minus lam x the true cost (tokens are a function of x0)."""

    def __init__(self, d=4, seed=7):
        self.W = np.random.default_rng(seed).normal(size=(d, 3))

    def scores(self, X, lam, input_tokens=None):
        X = np.asarray(X, dtype=float)
        tokens = np.round(200 * np.exp(0.3 * X[:, 0]))
        return 0.4 * np.tanh(X @ self.W) + np.array([0.0, 0.1, 0.2]) - lam * tokens[:, None] * PRICES / 1e6


@pytest.fixture(scope="module")
def halves():
    syn = make_synthetic(n=6000, d=4, n_models=3, seed=3)
    idx = np.random.default_rng(0).permutation(len(syn.X))
    return syn.subset(idx[:3000]), syn.subset(idx[3000:])


def true_cost(syn, router, lam):
    t = router.scores(syn.X, lam).argmax(1)
    return float(syn.cost[np.arange(len(t)), t].mean())


@pytest.mark.parametrize("fraction", [0.5, 0.65, 0.8])
def test_calibration_meets_the_budget_on_held_out_prompts(halves, fraction):
    cal_half, test_half = halves
    router = KnownRouter()
    hi_cost, lo_cost = true_cost(cal_half, router, 0.0), true_cost(cal_half, router, LAM_RANGE[1])
    budget = lo_cost + fraction * (hi_cost - lo_cost)
    ev = holdout_evidence(cal_half.logs, cal_half.X, cal_half.models, NuisanceConfig(cv=3))
    c = BudgetCalibrator(router, cal_half.models, ev, LAM_RANGE).calibrate(budget=budget)
    assert c.met and LAM_RANGE[0] < c.lam < LAM_RANGE[1]
    assert c.cost.value <= budget and c.cost.ci_low <= budget <= c.cost.ci_high + 1e-12
    held_out = true_cost(test_half, router, c.lam)
    assert held_out / budget == pytest.approx(1.0, abs=0.03), (held_out, budget)


def test_no_lambda_meets_a_budget_below_the_cheapest_and_a_loose_one_does_not_bind(halves):
    cal_half, _ = halves
    router = KnownRouter()
    ev = holdout_evidence(cal_half.logs, cal_half.X, cal_half.models, NuisanceConfig(cv=3))
    c = BudgetCalibrator(router, cal_half.models, ev, LAM_RANGE)
    tight = c.calibrate(budget=1e-6)
    assert not tight.met and tight.lam == LAM_RANGE[1] and tight.message.startswith("no lambda in [0, 20000]")
    loose = c.calibrate(budget=1.0)
    assert loose.met and loose.lam == LAM_RANGE[0]


def test_strong_share_is_the_routers_own_share(halves):
    cal_half, _ = halves
    router = KnownRouter()
    ev = holdout_evidence(cal_half.logs, cal_half.X, cal_half.models, NuisanceConfig(cv=3))
    c = BudgetCalibrator(router, cal_half.models, ev, LAM_RANGE).calibrate(strong_share=("model-2", 0.2))
    assert c.met and c.shares["model-2"] <= 0.2
    just_below = router.scores(cal_half.X, c.lam * (1 - 1e-6) - 1e-9).argmax(1)
    assert np.mean(just_below == 2) > 0.2  # the smallest such lambda
    with pytest.raises(ValueError, match="unknown model"):
        BudgetCalibrator(router, cal_half.models, ev, LAM_RANGE).calibrate(strong_share=("gpt-x", 0.2))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_budgets_are_refused(halves, bad):
    cal_half, _ = halves
    ev = holdout_evidence(cal_half.logs.iloc[:200], cal_half.X[:200], cal_half.models, NuisanceConfig(cv=2))
    with pytest.raises(ValueError, match="budget must be"):
        BudgetCalibrator(KnownRouter(), cal_half.models, ev, LAM_RANGE).calibrate(budget=bad)


def test_the_search_finds_a_step_to_its_precision():
    step = 1234.5678
    lam, met = smallest_meeting(lambda x: 1.0 if x < step else 0.0, 0.0, 10000.0, 0.5)
    assert met and step <= lam <= step + 10000.0 / 2**29
    assert search_grid(0.0, 100.0, own=[0.0, 50.0, 500.0])[-1] == 100.0


class FallbackAtSmallLambda(KnownRouter):
    """A trained router's shape: below ``DIP`` its heads fell back to the cheapest model, above it they
    route as :class:`KnownRouter`; so its spend rises with lambda up to ``DIP``, then falls."""

    DIP = 100.0

    def scores(self, X, lam, input_tokens=None):
        s = super().scores(X, lam)
        if lam < self.DIP:
            s = np.zeros_like(s)
            s[:, 0] = 1.0
        return s


def test_a_budget_is_searched_and_held_from_the_spend_peak_up(halves):
    cal_half, test_half = halves
    router = FallbackAtSmallLambda()
    cheap, peak = true_cost(cal_half, router, 0.0), true_cost(cal_half, router, router.DIP)
    assert peak > 1.5 * cheap
    ev = holdout_evidence(cal_half.logs, cal_half.X, cal_half.models, NuisanceConfig(cv=3))
    cal = BudgetCalibrator(router, cal_half.models, ev, LAM_RANGE)
    budget = 0.5 * (cheap + peak)
    c = cal.calibrate(budget=budget)
    # lambda 0 meets the budget by spending `cheap`; the floor finds the lambdas that spend it
    assert c.lam_floor >= router.DIP and c.met and c.lam >= c.lam_floor
    assert true_cost(test_half, router, c.lam) / budget == pytest.approx(1.0, abs=0.05)
    loose = cal.calibrate(budget=2 * peak)
    assert loose.met and loose.lam == loose.lam_floor and "without spending it" in loose.message
    assert loose.to_dict()["lam_floor"] == loose.lam_floor  # calibrate --out carries it to serve


def test_fill_moves_its_share_of_the_mass_outside_the_targets_to_the_best_scored_target():
    P = np.array([[0.9, 0.05, 0.05], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1]])
    scores = np.array([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0], [1.0, 0.0, 2.0]])
    to = [False, True, True]  # models 1 and 2 reach the budget
    out = fill_probabilities(P, scores, to, 0.5)
    np.testing.assert_allclose(out.sum(1), 1.0)
    np.testing.assert_allclose(out[:, 0], P[:, 0] * 0.5)  # the cheap model keeps half its mass
    np.testing.assert_allclose(out[0], [0.45, 0.05, 0.5])  # row 0: model 2 scores best among the targets
    np.testing.assert_allclose(out[1], [0.05, 0.15, 0.8])  # row 1: model 1 does
    np.testing.assert_allclose(out[2], [0.1, 0.7, 0.2])
    for fill, mask in [(0.0, to), (0.5, [False] * 3), (0.5, [True] * 3)]:  # nothing to move
        np.testing.assert_array_equal(fill_probabilities(P, scores, mask, fill), P)
    full = fill_probabilities(P, scores, to, 1.0)
    assert (full[:, 0] == 0).all()  # fill 1: every decision goes to a model that reaches the budget
    kept = fill_probabilities(P, scores, to, 1.0, floor=0.15)  # but for the exploration floor
    np.testing.assert_allclose(kept[:, 0], [0.15, 0.1, 0.15])
    np.testing.assert_allclose(kept.sum(1), 1.0)
