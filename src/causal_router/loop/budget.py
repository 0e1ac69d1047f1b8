"""Holding a budget in the loop (``causal-router loop --budget B``).

B is a fraction of the **best model's** mean cost per decision on the table, the best model being the
one with the highest mean quality over every prompt of the table (the model a team would send
everything to without a router; RouterBench: gpt-4-1106-preview, LLMRouter: the 51B nemotron). So
``--budget 0.4`` asks for 40% of what always sending the best model would cost.

Under a budget the loop deploys a router that answers a lambda interval (the interval router,
``rm-interval``, trained with its RM-Softmax endpoints on :func:`budget_grid`; or ``naive``, which
answers any lambda) and serves each decision, in stream order, at the lambda of a controller:

- ``online`` (the product): :class:`causal_router.serving.budget.BudgetController`, the service's own
  controller, stepping on each decision's realised cost (the outcome the loop feeds back), its bounds
  the router's interval, its cold start the lambda calibrated on round 0 (below), as ``serve`` starts;
  below the router's spend peak its slack moves traffic to the models that reach the budget (``fill``,
  :mod:`causal_router.serving.budget`), each model's mean cost known from round 0's logs on;
- ``fixed``: the calibrated lambda throughout (or a given one), never moved.

Calibration (the cold start, and the fixed arm's lambda): after round 0's training,
:class:`causal_router.policy.budget.BudgetCalibrator` on round 0's validation and holdout logs (the
rows the router's heads were not fitted on), DR nuisances cross-fitted on them. Round 0 itself is the
incumbent's and is not budgeted.
"""

from __future__ import annotations

import math

import numpy as np

#: The router's training grid under a budget, in multiples of the loop's lambda (``--lam``): the paper
#: grids are these multiples of the loop studies' lambdas (RouterBench 100, LLMRouter 7400).
GRID_MULTIPLES = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0)
#: What each deployed router trains under a budget (the interval router starts from its endpoints).
TRAIN_WITH = {"rm-interval": ["rm-softmax", "rm-interval"]}
CONTROLS = ("online", "fixed")
#: The controller's integral gain in the loop, above the service's default (0.005): a retrained router
#: changes the spend curve at a round's start, and 0.02 catches up in ~50 decisions rather than ~200
#: (RouterBench, B 0.4, seed 0: the 100 decisions after such a change spent 1.23 x the budget at 0.02,
#: 2.0 x at 0.005).
LOOP_GAIN = 0.02


def check_fraction(fraction) -> float:
    """``--budget``: a finite fraction > 0 (ValueError naming the value otherwise)."""
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise ValueError(f"--budget must be a number > 0 (a fraction of the best model's cost), got {fraction!r}") \
            from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"--budget must be a finite number > 0 (a fraction of the best model's mean cost), "
                         f"got {fraction!r}")
    return value


def best_model(ff) -> tuple[str, float]:
    """(the model with the highest mean quality on the table, its mean cost per decision in USD)."""
    k = int(np.argmax(np.nanmean(ff.scores, axis=0)))
    return str(ff.models[k]), float(np.nanmean(ff.costs[:, k]))


def budget_usd(ff, fraction) -> float:
    """USD per decision of ``fraction`` of the best model's mean cost (:func:`best_model`)."""
    return check_fraction(fraction) * best_model(ff)[1]


def budget_grid(lam: float, multiples=GRID_MULTIPLES) -> list[float]:
    """The training grid under a budget: ``multiples`` of ``lam`` (sorted, distinct)."""
    if not (math.isfinite(lam) and lam > 0):
        raise ValueError(f"a budget needs --lam > 0 (its grid is multiples of it), got {lam}")
    return sorted({float(lam) * float(m) for m in multiples})


class FixedLam:
    """A lambda that never moves (the ``fixed`` control): the controller's interface, ``observe`` a no-op."""

    fill = 0.0

    def __init__(self, lam: float):
        self.lam = float(lam)

    def observe(self, cost: float, model: str | None = None) -> None:
        pass

    def fill_for(self, models) -> tuple[float, tuple]:
        return 0.0, ()


def calibrate(rs, method: str, data_dir, encoder, budget: float, grid, nuisances, prices=None,
              splits=("val", "holdout")) -> tuple[float, bool, float, dict]:
    """The lambda at which router ``method`` of ``rs`` meets ``budget`` (USD per decision) by the DR mean
    cost on the logs ``splits`` of ``data_dir`` (rows its heads were not fitted on): (lambda, met, the
    spend peak ``lam_floor``: the controller's lower bound, the logs' ``{model: [rows, total cost]}``)."""
    import pandas as pd

    from ..policy.budget import BudgetCalibrator
    from ..policy.data import holdout_evidence
    from .steps import read_logs

    logs = read_logs(data_dir, encoder)
    rows = pd.concat([logs[k][0] for k in splits], ignore_index=True)
    X = np.concatenate([logs[k][1] for k in splits])
    ev = holdout_evidence(rows, X, list(rs.models), nuisances, prices)
    cal = BudgetCalibrator(rs.get(method), rs.models, ev, (grid[0], grid[-1]), grid).calibrate(budget=budget)
    spent = rows.groupby("model")["cost"].agg(["count", "sum"])
    return cal.lam, cal.met, cal.lam_floor, {str(m): [int(n), float(t)] for m, (n, t) in spent.iterrows()}


def make_control(kind: str, budget: float, grid, lam0: float, gain: float | None = None, floor: float | None = None,
                 fill: float | None = None):
    """The ``online`` controller (the service's; bounds: ``grid``'s ends, the lower raised to the spend peak
    ``floor`` when given; cold start ``lam0``; ``fill``: the most its slack buys, None: the service's
    default), or ``fixed`` at ``lam0``."""
    from ..serving.budget import FILL, BudgetController

    if kind not in CONTROLS:
        raise ValueError(f"control must be one of {', '.join(CONTROLS)}, got {kind!r}")
    if kind == "fixed":
        return FixedLam(lam0)
    control = BudgetController(budget, (grid[0], grid[-1]), lam0, LOOP_GAIN if gain is None else gain,
                               fill_max=FILL if fill is None else fill)
    if floor is not None:
        control.rebase(lam0, floor)
    return control


class Budget:
    """A spend target for :func:`causal_router.loop.rounds.run_rounds`.

    usd : float             USD per decision (mean; :func:`budget_usd` from a fraction)
    grid : list of float    the router's training grid (its lambda interval: the ends)
    control : str           ``online`` (the service's controller) or ``fixed``
    lam : float or None     the fixed lambda (None: calibrated on round 0, :func:`calibrate`)
    gain : float or None    the controller's integral gain (None: :data:`LOOP_GAIN`)
    fill : float or None    the most the controller's slack buys below its floor (0: a cap; None: the
                            service's default; serving/budget.py)

    After the run, :attr:`trace` holds one row per budgeted decision (:func:`serve_controlled`),
    :attr:`lam0` the calibrated lambda and :attr:`met` whether calibration met the target.
    """

    def __init__(self, usd: float, grid, control: str = "online", lam: float | None = None,
                 gain: float | None = None, fill: float | None = None):
        if not (math.isfinite(usd) and usd > 0):
            raise ValueError(f"the budget must be a finite number of USD per decision > 0, got {usd!r}")
        if control not in CONTROLS:
            raise ValueError(f"control must be one of {', '.join(CONTROLS)}, got {control!r}")
        self.usd, self.grid, self.kind, self.fixed, self.gain = float(usd), sorted(map(float, grid)), control, lam, gain
        self.fill = fill
        self.trace: list = []
        self.control = None
        self.lam0, self.met = None, None

    def methods(self, method: str) -> list[str]:
        return TRAIN_WITH.get(method, [method])

    def start(self, rs, method, data_dir, encoder, nuisances, prices=None) -> None:
        """After round 0's training: the calibrated lambda, then the control starting there, knowing each
        model's mean cost from the logs it was calibrated on (where its slack goes: serving/budget.py)."""
        self.lam0, self.met, floor, spent = calibrate(rs, method, data_dir, encoder, self.usd, self.grid,
                                                      nuisances, prices)
        lam = self.lam0 if self.fixed is None else float(self.fixed)
        self.control = make_control(self.kind, self.usd, self.grid, lam, self.gain, floor, self.fill)
        if hasattr(self.control, "by_model"):
            self.control.by_model.update(spent)

    def redeploy(self, rs, method, data_dir, encoder, nuisances, prices=None) -> None:
        """A new router is deployed after round 1 or later: the online controller moves its operating point
        to the lambda calibrated for it on the holdout (:meth:`BudgetController.rebase`: the integral
        keeps the spend's memory), so that a router that spends differently does not cost a burst of
        over- or underspending while the integral catches up. A fixed lambda stays where it is."""
        if self.kind != "online":
            return
        lam, _, floor, _ = calibrate(rs, method, data_dir, encoder, self.usd, self.grid, nuisances, prices,
                                     ("holdout",))
        self.control.rebase(lam, floor)

    def record(self, stream, actions, r: int) -> dict:
        """The round's budget columns: the target, the mean cost of its decisions (None for round 0,
        the incumbent's), and the mean quality and cost of the deployed router's test choices."""
        costs = [t["cost"] for t in self.trace if t["round"] == r]
        q, c = heldout_outcomes(stream, actions)
        return {"lam": float(self.control.lam), "budget": self.usd, "spend": float(np.mean(costs)) if costs else None,
                "test_quality": q,
                "test_cost": c}


def serve_controlled(service, stream, idx: np.ndarray, explore: float, control, r: int, trace=None) -> np.ndarray:
    """The service routes prompts ``idx`` (m,) one decision at a time, each at ``control.lam`` with its
    ``fill``; each outcome goes back as feedback and its cost to ``control``. Appends ``{round, prompt,
    lam, fill, model, propensity, cost}`` per decision to ``trace`` (a list) when given. Returns the chosen
    model indices (m,)."""
    import uuid

    from ..serving.service import RouteItem
    from .steps import feed_back

    ff = stream.ff
    index = {m: k for k, m in enumerate(stream.models)}
    chosen = np.empty(len(idx), dtype=int)
    for j, i in enumerate(np.asarray(idx)):
        lam = float(control.lam)
        fill, fill_to = control.fill_for(stream.models)
        item = RouteItem([str(ff.prompts[i])], lam, float(explore), uuid.uuid4().hex, fill=fill, fill_to=fill_to)
        out = service.handle([item])[0]
        if isinstance(out, Exception):
            raise out
        d = out[0]
        k = chosen[j] = index[d["model"]]
        cost = feed_back(service, ff, i, k, d["decision_id"])
        control.observe(cost, d["model"])
        if trace is not None:
            trace.append({"round": r, "prompt": int(i), "lam": lam, "fill": fill, "model": d["model"],
                          "propensity": float(d["propensity"]), "cost": cost})
    return chosen


def heldout_outcomes(stream, actions) -> tuple[float, float]:
    """Mean (quality, cost) of ``actions`` on the test prompts."""
    t = stream.test
    return float(stream.ff.scores[t, actions].mean()), float(stream.ff.costs[t, actions].mean())
