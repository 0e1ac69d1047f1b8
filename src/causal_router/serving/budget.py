"""Serving a budget instead of a lambda: the controller that sets lambda from the spend the decision log
records (``serve.budget``, USD per decision, mean; ``causal-router serve --budget``).

The controller's rule (:class:`BudgetController`)
--------------------------------------------------
It moves in a warped coordinate of the router's lambda interval ``[lo, hi]``,
``u = log(1 + (lam - lo) / s) / log(1 + (hi - lo) / s)`` with ``s = (hi - lo) / 10000``, so that equal
steps in ``u`` are equal ratios of lambda above ``s`` (the cost of a router's choices changes most at
small lambda). Each recorded cost ``c`` (USD, one decision's) is one step of dual ascent on the spend
rate, a PI controller::

    e     = c / budget - 1                                      (relative error of that decision)
    I    <- clip(I + gain * e, -F - u0, 1 - u0)                  (integral: the dual variable, no wind-up)
    P     = KP * (mean cost of the last ``window`` costs / budget - 1)
    u     = clip(u0 + I + P, -F, 1);   lam = the lambda at max(u, 0);   fill = max(-u, 0)

Overspending raises lambda (the router then prefers cheaper models), underspending lowers it. Because
``I`` is the running sum of the relative errors, the mean cost since start is within
``1 / (gain * decisions)`` of the budget (relative) while lambda stays inside its bounds: the spend is
held on average, not only in a window. ``u0`` is the cold start (below).

Cold start and a lack of cost data: the controller starts at the calibrated lambda (``serve.budget_lam0``,
else ``lam`` of the ``causal-router calibrate --out`` file ``serve.budget_calibration``
(``serve --budget-calibration FILE``), else the middle of ``[lo, hi]`` in ``u``, with a warning) and stays
there until costs are recorded; when costs stop arriving it holds its last lambda.

The floor: a calibration file's ``lam_floor`` (the router's spend peak, :mod:`causal_router.policy.budget`)
raises ``lo``: below it the router spends no more, so a controller that went lower to spend more would
find less and wind to the bottom.

Below the floor, the slack buys exploration (``serve.budget_fill``, the most it buys, default 1; 0: a
budget the router cannot spend is served at the floor, as a cap). ``u`` continues below 0 to
``-budget_fill``; there lambda stays at ``lo`` and ``fill = -u`` of the probability the served policy puts
on models whose mean recorded cost is below the budget (above the exploration floor each keeps) moves to
the best-scored model on that prompt among those whose mean recorded cost reaches it
(:func:`causal_router.policy.budget.fill_probabilities`). A router that underrates the dear models (a
cost-biased logger rarely chose them) spends less than the budget even at its floor; the unspent budget
then logs those models where the router likes them best, with exact propensities, and the next training
learns what they are worth. With ``fill = 1`` every decision but the exploration floor's goes to a model
that reaches the budget, so a budget up to about the dearest model's cost can be held. The costs per model
are those recorded since the service (or the loop's budget) started.

Where the costs come from (:class:`BudgetGovernor`): the decision log, polled at most every
:data:`POLL_S` seconds from the batcher's thread: a gateway call's outcome cost (``outcomes``), else the
decision's feedback cost (``feedback``), once per decision, for the decisions made since this service
started, in the order they are recorded. Every worker of ``serve --workers N`` reads the same log and
so steers on the whole service's spend.

Overrides: a request that sends ``lam`` is served at that lambda, not the controller's; its cost is
recorded like any other and counts against the budget, so the controller steers the remaining
traffic to make up for it (a service where every request overrides cannot hold its budget).

Hard cap (``serve.budget_hard``, USD per hour, optional): when the costs recorded over the last hour
reach it, every decision (overrides included) goes to the cheapest model (the price sheet's, else the
lowest mean recorded cost; else the router's choice at ``hi``) with propensity 1, the response says
``x-causal-router-budget: capped`` and ``GET /v1/budget`` ``capped: true``.

Every decision records the lambda it was served at (the decision log's ``lam``) and its propensities,
so the logs stay valid for DR training whatever lambda the controller chose.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from datetime import timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from .store import decisions, feedback, now, outcomes

log = logging.getLogger("causal_router.serving.budget")

__all__ = ["DEFAULT_GAIN", "FILL", "KP", "POLL_S", "WINDOW", "BudgetController", "BudgetGovernor", "calibrated_lam"]

#: Integral gain per recorded cost (``serve.budget_gain``), proportional gain, window, poll period; the
#: most the slack buys below the floor (``serve.budget_fill``).
DEFAULT_GAIN = 0.005
FILL = 1.0
KP = 0.05
WINDOW = 500
POLL_S = 1.0
OVERLAP_S = 60.0
HOUR_S = 3600.0
_WARP = 1e4


class BudgetController:
    """The PI / dual-ascent rule of the module docstring, without I/O: :meth:`observe` costs, read :attr:`lam`."""

    def __init__(self, budget: float, lam_range, lam0: float | None = None, gain: float = DEFAULT_GAIN,
                 window: int = WINDOW, kp: float = KP, fill_max: float = FILL):
        if not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget > 0):
            raise ValueError(f"the budget must be a finite number of USD per decision > 0, got {budget!r}")
        lo, hi = (float(x) for x in lam_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(f"a budget needs a router with a finite lambda interval, got [{lo:g}, {hi:g}]")
        self.budget, self.lo, self.hi, self.gain, self.kp = float(budget), lo, hi, float(gain), float(kp)
        self.base_lo = lo  # the router's own bound: rebase may raise lo to a spend peak, never below this
        self.scale = (hi - lo) / _WARP if hi > lo else 1.0
        self.u0 = 0.5 if lam0 is None else self.to_u(min(max(float(lam0), lo), hi))
        if not (math.isfinite(fill_max) and 0 <= fill_max <= 1):
            raise ValueError(f"budget_fill must be in [0, 1], got {fill_max!r}")
        self.fill_max = float(fill_max)
        self.integral = 0.0
        self.recent: deque = deque(maxlen=int(window))
        self.n, self.total = 0, 0.0
        self.by_model: dict = {}  # model -> [recorded decisions, their total cost]

    def to_u(self, lam: float) -> float:
        if self.hi <= self.lo:
            return 0.0
        return math.log1p((lam - self.lo) / self.scale) / math.log1p((self.hi - self.lo) / self.scale)

    def to_lam(self, u: float) -> float:
        if self.hi <= self.lo:
            return self.lo
        lam = self.lo + self.scale * math.expm1(u * math.log1p((self.hi - self.lo) / self.scale))
        return min(max(lam, self.lo), self.hi)  # u = 1 can round a hair above hi

    def observe(self, cost: float, model: str | None = None) -> None:
        """One decision's recorded cost (USD), and the model that cost it when known."""
        e = float(cost) / self.budget - 1.0
        self.integral = min(max(self.integral + self.gain * e, -self.fill_max - self.u0), 1.0 - self.u0)
        self.recent.append(float(cost))
        self.n += 1
        self.total += float(cost)
        if model is not None:
            m = self.by_model.setdefault(str(model), [0, 0.0])
            m[0] += 1
            m[1] += float(cost)

    def mean_costs(self) -> dict:
        """Mean recorded cost per model (USD per decision)."""
        return {m: t / n for m, (n, t) in self.by_model.items() if n}

    def fill_for(self, models) -> tuple[float, tuple]:
        """(fill, the models of ``models`` whose mean recorded cost reaches the budget): the share the
        served policy moves to them (module docstring); (0, ()) when none is known to reach it."""
        fill = self.fill
        if fill <= 0:
            return 0.0, ()
        means = self.mean_costs()
        to = tuple(m for m in models if means.get(m, -math.inf) >= self.budget)
        return (fill, to) if to else (0.0, ())

    def rebase(self, lam: float, floor: float | None = None) -> None:
        """A new router is deployed whose calibrated lambda is ``lam`` (and spend peak ``floor``, the new
        lower bound, when given): move the operating point so the controller's lambda is ``lam`` now,
        keeping the integral (the spend's memory) and the window. A ``lam`` at the floor while the
        controller is filling keeps the fill: the new router cannot spend more than at its floor either."""
        if floor is not None:
            self.lo = min(max(float(floor), self.base_lo), self.hi)
            self.scale = (self.hi - self.lo) / _WARP if self.hi > self.lo else 1.0
        target = self.to_u(min(max(float(lam), self.lo), self.hi))
        if target <= 0.0 and self.u < 0.0:
            target = self.u
        self.u0 = target - self.integral - self._p()

    def _p(self) -> float:
        return self.kp * (float(np.mean(self.recent)) / self.budget - 1.0) if self.recent else 0.0

    @property
    def u(self) -> float:
        return min(max(self.u0 + self.integral + self._p(), -self.fill_max), 1.0)

    @property
    def lam(self) -> float:
        return self.to_lam(max(self.u, 0.0))

    @property
    def fill(self) -> float:
        return max(-self.u, 0.0)


def calibrated_lam(path) -> tuple[float, float | None]:
    """(``lam``, ``lam_floor`` or None) of a ``causal-router calibrate --out`` file (ValueError naming the
    file otherwise)."""
    try:
        data = json.loads(Path(path).read_text())
        lam = float(data["lam"])
        floor = None if data.get("lam_floor") is None else float(data["lam_floor"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: not a calibrate --out file with a lambda ({type(err).__name__}: {err})") from None
    if not math.isfinite(lam) or (floor is not None and not math.isfinite(floor)):
        raise ValueError(f"{path}: its lambda {lam!r} (floor {floor!r}) is not finite")
    return lam, floor


class BudgetGovernor:
    """The service's budget: the controller fed from the decision log, the hard cap, the report.

    ``store`` : the DecisionStore; ``settings`` : ServeSettings (``budget``, ``budget_lam0``,
    ``budget_calibration``, ``budget_hard``, ``budget_window``, ``budget_gain``, ``budget_fill``); ``lam_range`` : the
    served router's; ``prices`` : the price sheet ``{model: (input, output)}`` or None.
    """

    def __init__(self, settings, store, lam_range, prices=None, clock=time.time):
        lam0, floor = settings.budget_lam0, None
        if settings.budget_calibration:
            cal_lam, floor = calibrated_lam(settings.budget_calibration)
            lam0 = cal_lam if lam0 is None else lam0
        if lam0 is None:
            log.warning("serve.budget without a calibrated lambda (serve.budget_lam0 or --budget-calibration): "
                        "the controller starts in the middle of the lambda interval")
        self.lam0 = lam0
        lo, hi = (float(x) for x in lam_range)
        if floor is not None:
            lo = min(max(lo, floor), hi)
        self.controller = BudgetController(settings.budget, (lo, hi), lam0, settings.budget_gain,
                                           settings.budget_window, fill_max=settings.budget_fill)
        self.store, self.prices, self.hard, self.clock = store, prices or {}, settings.budget_hard, clock
        self.started = now()
        self.poll, self._polled = POLL_S, -math.inf
        self._seen: dict = {}  # decision id -> when its cost was read (the overlap's dedup)
        self._mark = self.started
        self._hour: deque = deque()  # (time, cost) of the costs recorded over the last hour
        self._hour_total = 0.0  # their sum, kept as they come and go (read for every decision under a hard cap)
        self._lock = threading.RLock()  # the batcher's thread decides, a request thread reports

    # -- the log --------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> None:
        """Read the costs recorded since the last read (at most every :attr:`poll` seconds)."""
        t = self.clock()
        if not force and t - self._polled < self.poll:
            return
        with self._lock:
            self._polled = t
            mark = self._mark
            costed = sa.exists().where(outcomes.c.decision_id == feedback.c.decision_id, outcomes.c.cost.is_not(None))
            out_q = (sa.select(outcomes.c.decision_id, outcomes.c.cost, outcomes.c.created_at, decisions.c.model)
                     .join(decisions, decisions.c.decision_id == outcomes.c.decision_id)
                     .where(decisions.c.created_at >= self.started, outcomes.c.created_at >= mark,
                            outcomes.c.cost.is_not(None)))
            fb_q = (sa.select(feedback.c.decision_id, feedback.c.cost, feedback.c.created_at, decisions.c.model)
                    .join(decisions, decisions.c.decision_id == feedback.c.decision_id)
                    .where(decisions.c.created_at >= self.started, feedback.c.created_at >= mark, ~costed))
            polled_at = now()
            with self.store.engine.connect() as conn:
                rows = [*conn.execute(out_q), *conn.execute(fb_q)]
            rows.sort(key=lambda r: r[2])
            for did, cost, _at, model in rows:
                if did in self._seen or cost is None:
                    continue
                self._seen[did] = polled_at
                self._record(float(cost), model, t)
            # the next read overlaps this one by OVERLAP_S (a slow commit's rows); ids older than that are forgotten
            self._mark = polled_at - timedelta(seconds=OVERLAP_S)
            self._seen = {d: at for d, at in self._seen.items() if at >= self._mark}

    def _record(self, cost: float, model: str, t: float) -> None:
        self.controller.observe(cost, model)
        self._hour.append((t, cost))
        self._hour_total += cost

    def hour_spend(self) -> float:
        cut = self.clock() - HOUR_S
        with self._lock:
            while self._hour and self._hour[0][0] < cut:
                self._hour_total -= self._hour.popleft()[1]
            if not self._hour:
                self._hour_total = 0.0  # no rounding residue left behind
            return self._hour_total

    @property
    def capped(self) -> bool:
        return self.hard is not None and self.hour_spend() >= self.hard

    def cheapest(self, models) -> str | None:
        """The cheapest of ``models``: by the price sheet, else by mean recorded cost; None if unknown."""
        if self.prices and all(m in self.prices for m in models):
            return min(models, key=lambda m: sum(self.prices[m]))
        with self._lock:
            means = self.controller.mean_costs()
        seen = {m: means[m] for m in models if m in means}
        return min(seen, key=seen.get) if len(seen) == len(models) else None

    # -- the service's hook -------------------------------------------------------------------
    def resolve(self, lam: float | None, lam_range=None) -> tuple[float, str]:
        """The lambda a request is served at and how: (the controller's lambda, within the served
        router's ``lam_range``, ``controlled``) when it sends none, else (its own, ``override``);
        ``capped`` whenever the hard cap is reached."""
        self.refresh()
        if lam is None:
            with self._lock:
                lam, how = self.controller.lam, "controlled"
            if lam_range is not None:  # a reloaded router with another interval
                lam = min(max(lam, float(lam_range[0])), float(lam_range[1]))
        else:
            lam, how = float(lam), "override"
        return lam, "capped" if self.capped else how

    def fill_for(self, models) -> tuple[float, tuple]:
        """The controller's (fill, models it goes to) for a controlled request (module docstring)."""
        with self._lock:
            return self.controller.fill_for(models)

    def cap(self, P: np.ndarray, models, scores_at_hi) -> np.ndarray:
        """Probabilities (n, K) of the capped policy: the cheapest model with propensity 1 (without prices
        or recorded costs: the router's own choice at the top of its interval, ``scores_at_hi()``)."""
        out = np.zeros_like(np.asarray(P, dtype=float))
        m = self.cheapest(list(models))
        if m is not None:
            out[:, list(models).index(m)] = 1.0
        else:
            out[np.arange(len(out)), np.asarray(scores_at_hi()).argmax(1)] = 1.0
        return out

    def report(self) -> dict:
        """What ``GET /v1/budget`` returns."""
        self.refresh(force=True)
        n_q = sa.select(sa.func.count()).select_from(decisions).where(decisions.c.created_at >= self.started)
        with self.store.engine.connect() as conn:  # only here: the batch thread's refresh need not count
            n_decisions = int(conn.execute(n_q).scalar() or 0)
        c = self.controller
        with self._lock:
            window, n, total, lam, fill = list(c.recent), c.n, c.total, c.lam, c.fill
        return {
            "budget": c.budget, "lam": lam, "fill": fill, "lam_range": [c.lo, c.hi], "lam0": self.lam0,
            "decisions": n_decisions, "costed_decisions": n,
            "spend_since_start": total, "spend_per_decision_since_start": total / n if n else None,
            "window": c.recent.maxlen, "spend_window": float(sum(window)),
            "spend_per_decision_window": float(np.mean(window)) if window else None,
            "hard_cap_per_hour": self.hard, "spend_last_hour": self.hour_spend(), "capped": self.capped,
            "started_at": self.started.isoformat(),
        }

