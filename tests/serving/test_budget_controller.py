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


def underspender(seed, fraction, fill_max, n=5000, delay=20):
    """A router that underrates the two dear models (a cost-biased logger rarely chose them): even at
    lambda 0 it picks the cheap ones, so no lambda spends ``fraction`` of the strongest model's cost. Each
    decision is drawn from its policy after :func:`fill_probabilities`, as the service serves it."""
    from causal_router.policy.budget import fill_probabilities

    rng = np.random.default_rng(seed)
    names = [f"m{k}" for k in range(4)]
    believed = np.array([0.5, 0.6, 0.45, 0.4])
    budget = fraction * SCALE[-1] * math.exp(0.125)
    ctl = BudgetController(budget, (0.0, 74000.0), 0.0, 0.02, fill_max=fill_max)
    ctl.by_model.update({m: [1, float(c)] for m, c in zip(names, SCALE * math.exp(0.125))})  # the logs' costs
    costs, fills, pending = [], [], []
    for _ in range(n):
        c = SCALE * rng.lognormal(0, 0.5, size=4)
        scores = (believed + 0.1 * rng.normal(size=4) - ctl.lam * c)[None]
        P = np.eye(4)[[int(scores.argmax())]]
        fill, to = ctl.fill_for(names)
        P = fill_probabilities(P, scores, [m in to for m in names], fill)
        k = int(rng.choice(4, p=P[0]))
        costs.append(c[k])
        fills.append(fill)
        pending.append((c[k], names[k]))
        if len(pending) > delay:
            ctl.observe(*pending.pop(0))
    return np.array(costs), np.array(fills), budget


@pytest.mark.parametrize("fraction", [0.2, 0.6])
def test_a_router_that_cannot_spend_the_budget_spends_it_through_the_fill(fraction):
    costs, fills, budget = underspender(0, fraction, fill_max=0.0)
    assert ratios(costs, budget)[0] < 0.7  # at its floor, as a cap: under the budget
    assert fills.max() == 0
    costs, fills, budget = underspender(0, fraction, fill_max=1.0)
    mean, low, high = ratios(costs, budget)
    # windows are lumpier than a lambda's: at 0.2 a fifth of the decisions go to models 2-13x the budget
    assert abs(mean - 1) <= 0.02 and 0.85 <= low and high <= 1.15, (mean, low, high)
    assert 0 < fills[WARMUP:].mean() < 1


def test_the_fill_goes_only_to_models_whose_recorded_cost_reaches_the_budget_and_rebase_keeps_it():
    ctl = BudgetController(1.0, (0.0, 10.0), 0.0, 0.05)
    for _ in range(100):
        ctl.observe(0.1, "cheap")  # underspent at the floor: u goes below 0
    assert ctl.lam == 0.0 and 0 < ctl.fill <= 1
    assert ctl.fill_for(["cheap", "dear"]) == (0.0, ())  # no model known to reach the budget: nothing moves
    ctl.observe(3.0, "dear")
    fill, to = ctl.fill_for(["cheap", "dear"])
    assert to == ("dear",) and fill == pytest.approx(ctl.fill)
    before = ctl.fill
    ctl.rebase(0.0)  # a new router, calibrated at its floor: the fill is kept
    assert ctl.fill == pytest.approx(before)
    ctl.rebase(5.0)  # one that spends the budget above its floor: back to lambda
    assert ctl.fill == 0 and ctl.lam == pytest.approx(5.0)
    with pytest.raises(ValueError, match="budget_fill"):
        BudgetController(1.0, (0.0, 1.0), fill_max=1.5)
