"""From a budget to a lambda, offline: the lambda at which a router meets a spend target on logged prompts
(``causal-router calibrate``; the online controller that holds a target is :mod:`causal_router.serving.budget`).

Two targets:

- **budget** (USD per decision, mean): the doubly robust (DR) estimate of the mean cost of the router's
  choices, on held-out logs with nuisances cross-fitted on those logs
  (:func:`causal_router.policy.data.holdout_evidence`, the promotion gate's evidence), must be at most
  the budget. Per row, the DR cost of the router's choice ``t`` is
  ``mu^c_t(x) + 1[t_i = t] (c_i - mu^c_t(x)) / e_i`` (docs/architecture.md, Method step 2), and the
  same for quality; their means carry normal (1 - alpha) intervals.
- **strong share** (``MODEL=F``): the share of prompts the router itself sends to ``MODEL`` must be at
  most ``F``. This needs no DR: the router's choices on the prompts are known.

The search (:func:`smallest_meeting`), the same for both: the target's function ``f(lambda)`` (DR mean
cost, or the share) is non-increasing in lambda in expectation, but an estimate need not be, nor need a
trained router's spend: a head that fell back to a cheap default at small lambda spends less there than
the heads above it. So a budget is searched (and held online) only from the **spend peak** up:
``lam_floor``, the smallest search-grid lambda whose DR mean cost is within one standard error of the
grid's highest (a router whose spend falls with lambda keeps ``lam_floor = lo``). Below it the router
spends no more, and a controller that went there to spend more would find less and wind to
the bottom (RouterBench, budget 0.2, seed 0: 69% of decisions at lambda 0, spending 0.6 of the budget).
A budget above the peak's cost cannot be spent: the answer is ``lam_floor`` with ``met`` True (the
target is a ceiling), and the message says what the router spends at most.

1. ``f`` is evaluated on a grid over the router's lambda range ``[lo, hi]``: the router's own grid,
   :data:`GRID` evenly spaced points and :data:`GRID` geometrically spaced ones above ``lo``.
2. If ``f(lo) <= target`` the answer is ``lo``: the target does not bind (the router's most
   quality-minded lambda already meets it). For a budget, ``lo`` is ``lam_floor``.
3. Else the first grid lambda (ascending) with ``f <= target`` brackets the answer with the grid point
   before it; bisection (:data:`BISECTIONS` halvings) narrows the bracket, keeping its upper end
   meeting the target, and the answer is that upper end: the smallest lambda of the bracket that
   meets the target, to ``(hi - lo) / 2**BISECTIONS``.
4. If no grid lambda meets it, none in the range does (as far as the grid sees): the answer is ``hi``,
   the closest the router gets, reported with ``met = False``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from ..causal.ope import Estimate, HoldoutEvidence, summarize

#: Points of each grid (even and geometric) of the search, and the bisection's halvings.
GRID = 33
BISECTIONS = 30

__all__ = ["BISECTIONS", "GRID", "BudgetCalibrator", "Calibration", "fill_probabilities", "search_grid",
           "smallest_meeting"]


def fill_probabilities(P, scores, to, fill: float, floor: float = 0.0) -> np.ndarray:
    """The served policy with a budget's slack spent (:mod:`causal_router.serving.budget`): share ``fill``
    of each row's probability on the models outside ``to``, above the exploration ``floor`` that each
    keeps, moves to the model of ``to`` that the router scores best on that prompt. The result is still a
    policy of the prompt alone, so the drawn model's probability in it is its exact propensity.

    P : (n, K) the served policy's probabilities; scores : (n, K) the router's scores at the served lambda;
    to : (K,) bool, the models whose mean recorded cost reaches the budget; fill : float in [0, 1];
    floor : float, the least probability each model keeps. Returns (n, K), rows summing to 1.
    """
    P, to = np.asarray(P, dtype=float), np.asarray(to, dtype=bool)
    if fill <= 0 or not to.any() or to.all():
        return P
    best = np.where(to, np.asarray(scores, dtype=float), -np.inf).argmax(1)
    moved = fill * np.maximum(P[:, ~to] - floor, 0.0)
    out = P.copy()
    out[:, ~to] -= moved
    out[np.arange(len(out)), best] += moved.sum(1)
    return out


def search_grid(lo: float, hi: float, own=()) -> list[float]:
    """The search's grid over ``[lo, hi]``: the router's ``own`` lambdas inside it, ``GRID`` even and
    ``GRID`` geometric points (ratios from ``(hi - lo) / 1000`` to ``hi - lo`` above ``lo``)."""
    span = hi - lo
    pts = {lo, hi, *(float(x) for x in own if lo <= float(x) <= hi)}
    if span > 0:
        pts.update(lo + span * np.linspace(0, 1, GRID))
        pts.update(lo + span * np.geomspace(1e-3, 1, GRID))
    return sorted(pts)


def smallest_meeting(f: Callable[[float], float], lo: float, hi: float, target: float, own=()) -> tuple[float, bool]:
    """The smallest lambda in ``[lo, hi]`` with ``f(lambda) <= target`` by the module's rule; returns
    (lambda, met). Not met: (``hi``, False)."""
    grid = search_grid(lo, hi, own)
    if f(grid[0]) <= target:
        return grid[0], True
    for below, above in zip(grid, grid[1:]):
        if f(above) <= target:
            a, b = below, above
            for _ in range(BISECTIONS):
                mid = 0.5 * (a + b)
                if f(mid) <= target:
                    b = mid
                else:
                    a = mid
            return b, True
    return hi, False


@dataclass
class Calibration:
    """What ``calibrate`` reports: the lambda, whether it meets the target, and the DR estimates
    (quality and cost per decision, with their intervals) of the router's choices there."""

    target: str  # "budget" or "strong_share"
    value: float  # USD per decision, or the share
    lam: float
    met: bool
    lam_range: tuple
    cost: Estimate
    quality: Estimate
    shares: dict  # model -> share of the prompts the router sends it at lam
    n: int
    model: str | None = None  # the strong-share target's model
    message: str = ""
    curve: list = field(default_factory=list)  # [{lam, cost, quality}] on the router's own grid
    lam_floor: float | None = None  # the spend peak: a budget's search and controller stay at or above it
    peak_cost: float | None = None  # the DR mean cost there (the most the router spends)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["lam_range"] = list(self.lam_range)
        return out


class BudgetCalibrator:
    """A router's choices on held-out prompts and their DR quality and cost at any lambda.

    router : anything with ``scores(X, lam, input_tokens) -> (n, K)`` over ``models`` (its argmax is
    the choice); evidence : :class:`~causal_router.causal.ope.HoldoutEvidence` of the logs, its arms
    ``models``; lam_range : (lo, hi), finite; own : the router's lambda grid (joins the search's).
    """

    def __init__(self, router, models, evidence: HoldoutEvidence, lam_range, own=(), alpha: float = 0.05):
        lo, hi = (float(x) for x in lam_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(f"the router's lambda range [{lo:g}, {hi:g}] is not a finite interval: calibrate "
                             "needs the interval router (or an endpoint router trained on a grid)")
        self.router, self.models, self.ev, self.alpha = router, list(models), evidence, alpha
        self.lo, self.hi, self.own = lo, hi, [float(x) for x in own]
        self._choices: dict[float, np.ndarray] = {}

    def choices(self, lam: float) -> np.ndarray:
        """The router's model index per prompt (n,) at ``lam``."""
        lam = float(lam)
        if lam not in self._choices:
            s = np.asarray(self.router.scores(self.ev.X, lam, self.ev.input_tokens), dtype=float)
            self._choices[lam] = s.argmax(1)
        return self._choices[lam]

    def dr(self, lam: float) -> tuple[np.ndarray, np.ndarray]:
        """Per-row DR (quality, cost) contributions (n,) of the router's choices at ``lam``."""
        t = self.choices(lam)  # (n,) actions: contributions takes them as they are
        q = self.ev.contributions(t, 0.0)
        return q, q - self.ev.contributions(t, 1.0)

    def mean_cost(self, lam: float) -> float:
        return float(np.mean(self.dr(lam)[1]))

    def share(self, lam: float, k: int) -> float:
        return float(np.mean(self.choices(lam) == k))

    def spend_peak(self) -> tuple[float, float]:
        """(``lam_floor``: the smallest search-grid lambda whose DR mean cost is within one standard error
        of the grid's highest, that cost)."""
        grid = search_grid(self.lo, self.hi, self.own)
        per_row = [self.dr(x)[1] for x in grid]
        costs = np.array([float(np.mean(c)) for c in per_row])
        top = int(np.argmax(costs))
        se = float(np.std(per_row[top], ddof=1) / np.sqrt(len(per_row[top]))) if len(per_row[top]) > 1 else 0.0
        k = int(np.flatnonzero(costs >= costs[top] - se)[0])
        return float(grid[k]), float(costs[k])

    def calibrate(self, budget: float | None = None, strong_share: tuple[str, float] | None = None) -> Calibration:
        """The lambda for ``budget`` (USD per decision) or ``strong_share`` ((model, fraction)); exactly one."""
        if (budget is None) == (strong_share is None):
            raise ValueError("give a budget or a strong share (one of them)")
        if budget is not None:
            if not (math.isfinite(budget) and budget > 0):
                raise ValueError(f"the budget must be a finite number of USD per decision > 0, got {budget!r}")
            floor, peak = self.spend_peak()
            lam, met = smallest_meeting(self.mean_cost, floor, self.hi, budget, self.own)
            target, value, model = "budget", float(budget), None
        else:
            model, value = strong_share
            if model not in self.models:
                raise ValueError(f"unknown model {model!r}: the router routes among {', '.join(self.models)}")
            if not (math.isfinite(value) and 0 < value <= 1):
                raise ValueError(f"the strong share must be a fraction in (0, 1], got {value!r}")
            k = self.models.index(model)
            lam, met = smallest_meeting(lambda x: self.share(x, k), self.lo, self.hi, value, self.own)
            target, floor, peak = "strong_share", None, None
        q, c = self.dr(lam)
        cal = Calibration(target, float(value), float(lam), bool(met), (self.lo, self.hi),
                          summarize(c, self.alpha, "dr-cost"), summarize(q, self.alpha, "dr-quality"),
                          {m: self.share(lam, k) for k, m in enumerate(self.models)}, len(q), model)
        cal.lam_floor, cal.peak_cost = floor, peak
        cal.curve = [{"lam": x, "cost": float(np.mean(cx)), "quality": float(np.mean(qx))}
                     for x in sorted({self.lo, self.hi, *self.own}) for qx, cx in [self.dr(x)]]
        cal.message = _message(cal)
        return cal


def _message(c: Calibration) -> str:
    what = (f"a budget of {c.value:g} USD per decision" if c.target == "budget"
            else f"at most {c.value:.1%} of prompts to {c.model}")
    if not c.met:
        got = (f"DR mean cost {c.cost.value:.6g} USD" if c.target == "budget"
               else f"{c.shares[c.model]:.1%} to {c.model}")
        return (f"no lambda in [{c.lam_range[0]:g}, {c.lam_range[1]:g}] meets {what}: the closest is lambda "
                f"{c.lam:g} ({got})")
    if c.target == "budget" and c.peak_cost is not None and c.peak_cost < c.value:
        return (f"lambda {c.lam:.6g} meets {what} on {c.n} prompts without spending it: the router spends at "
                f"most {c.peak_cost:.6g} USD per decision (DR), at lambda {c.lam_floor:g}")
    return f"lambda {c.lam:.6g} meets {what} on {c.n} prompts"
