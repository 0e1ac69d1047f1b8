"""The budget controller (serving/budget.py) on a simulated stream of decisions with known costs:
after a warm-up of 200 decisions the mean cost is within +-2% of the budget and the worst 500-decision
window within +-10%, from a cold start in the middle of the interval, with costs arriving 20 decisions late."""

import math

import numpy as np
import pytest

from causal_router.serving.budget import BudgetController

SCALE = np.array([0.2, 1.0, 4.0, 12.0]) * 1e-4  # USD per decision of 4 models, cheapest to strongest
QUALITY = np.array([0.4, 0.55, 0.7, 0.78])
WARMUP, WINDOW = 200, 500


def simulate(seed, fraction, n=5000, lam_range=(0.0, 74000.0), lam0=None, delay=20, drift=False, gain=0.005,
             dip=None, floor=None):
    """Each decision: per-model quality and cost drawn, the router's choice argmax(q - lam c) at the
    controller's lambda (below ``dip``: the cheapest model, as a head that fell back), its cost observed
    ``delay`` decisions later; ``floor``: the calibrated spend peak. Returns (costs, lambdas, budget)."""
    rng = np.random.default_rng(seed)
    budget = fraction * SCALE[-1] * math.exp(0.125)  # a fraction of the strongest model's mean cost
    ctl = BudgetController(budget, lam_range, lam0, gain)
    if floor is not None:
        ctl.rebase(ctl.lam if lam0 is None else lam0, floor)
    costs, lams, pending = [], [], []
    for t in range(n):
        q = np.clip(QUALITY + 0.15 * rng.normal(size=4), 0, 1)
        c = SCALE * rng.lognormal(0, 0.5, size=4)
        if drift and t > n // 2:  # the prompt mix shifts: the strong models' prompts get longer
            c = c * np.array([1.0, 1.0, 1.5, 1.5])
        lam = ctl.lam
        k = 0 if dip is not None and lam < dip else int(np.argmax(q - lam * c))
        costs.append(c[k])
        lams.append(lam)
        pending.append(c[k])
        if len(pending) > delay:
            ctl.observe(pending.pop(0))
    return np.array(costs), np.array(lams), budget


def ratios(costs, budget):
    after = costs[WARMUP:]
    windows = np.convolve(after, np.ones(WINDOW) / WINDOW, "valid") / budget
    return after.mean() / budget, windows.min(), windows.max()


@pytest.mark.parametrize("fraction", [0.2, 0.4, 0.6])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_spend_converges_to_the_budget(seed, fraction):
    costs, lams, budget = simulate(seed, fraction)
    mean, low, high = ratios(costs, budget)
    assert abs(mean - 1) <= 0.02, mean
    assert 0.9 <= low and high <= 1.1, (low, high)
    assert 0 <= lams.min() and lams.max() <= 74000


def test_the_spend_is_held_through_a_drift():
    costs, lams, budget = simulate(3, 0.4, n=8000, drift=True)
    mean, low, high = ratios(costs, budget)
    assert abs(mean - 1) <= 0.02 and 0.9 <= low and high <= 1.1, (mean, low, high)
    assert lams[-2000:].mean() > lams[2000:4000].mean()  # dearer prompts: a higher lambda


def test_cold_start_is_the_calibrated_lambda_and_no_costs_hold_it():
    ctl = BudgetController(1e-4, (0.0, 100.0), lam0=37.0)
    assert ctl.lam == pytest.approx(37.0)
    ctl = BudgetController(1e-4, (0.0, 100.0))
    assert 0 < ctl.lam < 100 and ctl.u == pytest.approx(0.5)


def test_overspending_raises_lambda_within_its_bounds():
    ctl = BudgetController(1e-4, (10.0, 100.0), lam0=50.0)
    for _ in range(2000):
        ctl.observe(1e-2)  # 100x the budget: no lambda meets it
    assert ctl.lam == pytest.approx(100.0)
    for _ in range(5000):
        ctl.observe(0.0)
    assert ctl.lam == pytest.approx(10.0)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_budgets_are_refused(bad):
    with pytest.raises(ValueError, match="budget must be a finite number"):
        BudgetController(bad, (0.0, 1.0))


def test_below_a_spend_peak_the_floor_keeps_the_controller_from_winding_down():
    # a router whose small-lambda heads fell back to the cheapest model spends most at lambda `dip`
    # (0.55 of the strongest model's cost: a budget that only lambdas near the peak spend)
    dip = 50.0
    costs, lams, budget = simulate(0, 0.55, dip=dip, lam0=500.0)
    mean, _, _ = ratios(costs, budget)
    assert mean < 0.5 and np.mean(lams[WARMUP:] < dip) > 0.5  # without a floor: wound to the bottom
    costs, lams, budget = simulate(0, 0.55, dip=dip, lam0=500.0, floor=dip)
    mean, low, high = ratios(costs, budget)
    assert abs(mean - 1) <= 0.02 and 0.9 <= low and high <= 1.1, (mean, low, high)
    assert lams.min() >= dip
