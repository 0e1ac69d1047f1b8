"""The one promotion gate: :func:`decide` whether a challenger router replaces the champion.

The registry (:func:`causal_router.registry.promote.promote`, which adds the MLflow side: loading
the versions, the tags, the alias) and the deployment loop (:func:`causal_router.loop.steps.gate`)
both call :func:`decide`, and both get a :class:`GateDecision`.

1. No champion: the challenger becomes the first champion.
2. **Coverage.** A challenger that does not serve the champion's whole lambda range, or lacks a model
   the champion routes among, is refused before any evidence is weighed: promoting it would make the
   service answer 422 to requests the champion served (:func:`coverage_shortfall`).
3. **Evidence.** Both routers are evaluated on the SAME held-out logs with the SAME nuisances
   (:class:`~causal_router.causal.ope.HoldoutEvidence`, the challenger's model list as arms), and
   the gate is a paired comparison of their per-row doubly robust (DR) contributions, averaged over
   the lambdas (:func:`gate_contributions`, :func:`gate_rule`)::

       promote  iff  mean(challenger's - champion's per-row DR contribution)  >  -margin      (rule estimate)
                iff  its (1 - alpha) lower confidence bound                    >  -margin      (rule bound)

   Paired because both values are estimated on the same rows: where the two routers choose the
   same model their contributions are identical and cancel, so the interval reflects only the rows
   where they disagree. Rows where either router's choice was logged with a probability below
   ``overlap`` (the logs' ``propensities`` vectors) count as no difference.

The settings are params.yaml's ``promote`` section (:class:`GateSettings`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from ..causal.ope import Estimate, HoldoutEvidence, summarize
from ..policy.routerset import RouterSet

#: The gate's overlap threshold (params.yaml ``promote.overlap``): a holdout row counts only where the
#: logging policy served both routers' choices with at least this probability (:func:`gate_contributions`;
#: 0: every row). With it the difference's sign is right where the clipped DR's was biased
#: (benchmarks/results/gate_diagnosis/*.md).
DEFAULT_OVERLAP = 0.1
#: What the gate asks of the paired difference (params.yaml ``promote.rule``): ``estimate``, its point
#: estimate above ``-margin``; ``bound``, the lower end of its (1 - alpha) interval above ``-margin``.
RULES = ("estimate", "bound")
DEFAULT_RULE = "estimate"
#: What a holdout row without overlap counts as (params.yaml ``promote.no_overlap``): ``tie``, no difference
#: (the champion's contribution for both); ``switch``, each router's SWITCH contribution there (the direct
#: method for the models served below ``overlap``, :meth:`HoldoutEvidence.switch_contributions`): a
#: challenger that routes to a model the logs barely served (a new one) is judged on the outcome models.
NO_OVERLAP = ("tie", "switch")
DEFAULT_NO_OVERLAP = "tie"
#: What the evidence's outcome models learn from (params.yaml ``promote.outcome_rows``): ``holdout``, the
#: held-out logs' other folds; ``train+holdout``, those plus the training logs (train and val), so that a
#: model with few held-out rows (a new one) is predicted from all its rows. Either way a held-out row is
#: scored by outcome models not fitted on it, so DR stays unbiased (the callers build the evidence:
#: :func:`causal_router.loop.steps.gate`, :func:`causal_router.registry.promote.promote`).
OUTCOME_ROWS = ("holdout", "train+holdout")
DEFAULT_OUTCOME_ROWS = "holdout"
DEFAULT_ALPHA = 0.05
DEFAULT_MARGIN = 0.0
#: What a decision can be.
DECISIONS = ("promoted", "rejected", "error", "skipped")


@dataclass(frozen=True)
class GateSettings:
    """params.yaml's ``promote`` section, as the gate reads it.

    alpha : the evidence's intervals are (1 - alpha); rule ``bound`` promotes on their lower end
    margin : >= 0, non-inferiority margin (0: the challenger must be better)
    overlap : in [0, 1), rows where a router's choice was logged below it count as no difference
    rule : ``estimate`` or ``bound``
    no_overlap : ``tie`` or ``switch``, what a row without overlap counts as (:data:`NO_OVERLAP`)
    lambdas : the lambdas the routers are compared at (their contributions averaged); None: the
        challenger's own (an endpoint's lambda, or the interval router's grid)
    outcome_rows : ``holdout`` or ``train+holdout``, what the outcome models learn from (:data:`OUTCOME_ROWS`)

    Values are checked where they are used (:func:`gate_rule`, :func:`gate_contributions`), so that
    a bad setting is a decision that names it, not a crash before the gate ran.
    """

    alpha: float = DEFAULT_ALPHA
    margin: float = DEFAULT_MARGIN
    overlap: float = DEFAULT_OVERLAP
    rule: str = DEFAULT_RULE
    lambdas: tuple | list | float | None = None
    no_overlap: str = DEFAULT_NO_OVERLAP
    outcome_rows: str = DEFAULT_OUTCOME_ROWS

    @classmethod
    def from_params(cls, section: dict | None, **overrides) -> GateSettings:
        """From params.yaml's ``promote`` section (unknown keys, such as ``keep_versions``, ignored)."""
        values = {k: v for k, v in (section or {}).items() if k in cls.__dataclass_fields__}
        return cls(**{**values, **overrides})


@dataclass
class Policy:
    """A router ready to evaluate: the set, the router it serves and the lambda(s) it serves.

    ``lambdas`` is the lambda an endpoint model serves, or the whole grid for the interval model.
    """

    routerset: RouterSet
    method: str
    lambdas: list
    source: str = ""

    @classmethod
    def of(cls, routerset: RouterSet, method: str, lambdas=None, source: str = "") -> Policy:
        """The router ``method`` of ``routerset`` (checked to exist), serving ``lambdas`` (default the set's grid)."""
        routerset.get(method)
        lams = routerset.lambdas if lambdas is None else lambdas
        return cls(routerset, method, [float(x) for x in lams], source)

    @property
    def models(self) -> list:
        return list(self.routerset.models)

    @property
    def lam_range(self) -> tuple[float, float]:
        """(lowest, highest) lambda the router serves."""
        return (min(self.lambdas), max(self.lambdas)) if self.lambdas else (math.nan, math.nan)

    def probabilities(self, X: np.ndarray, lam: float, models, input_tokens=None) -> np.ndarray:
        """Routing probabilities (n, K) in the order of ``models`` (names).

        Raises ValueError if the router sends traffic to a model outside ``models``.
        """
        probs = np.asarray(self.routerset.get(self.method).predict_proba(X, lam, input_tokens), dtype=float)
        index = {m: k for k, m in enumerate(models)}
        out = np.zeros((len(X), len(models)))
        for j, m in enumerate(self.routerset.models):
            if m in index:
                out[:, index[m]] += probs[:, j]
            elif probs[:, j].any():
                raise ValueError(f"router {self.source or self.method} routes to {m!r}, which the evaluation's "
                                 f"model list {list(models)} lacks")
        return out


@dataclass
class GateDecision:
    """A gate's outcome and the evidence behind it (estimates are DR policy values).

    The registry fills ``name``, the versions and ``timestamp``; :func:`decide` the rest.
    """

    name: str = ""
    promoted: bool = False
    reason: str = ""
    challenger_version: str | None = None
    champion_version: str | None = None  # before the decision
    challenger: Estimate | None = None
    champion: Estimate | None = None
    difference: Estimate | None = None  # paired challenger - champion (rows without overlap count as 0)
    lambdas: list = field(default_factory=list)
    without_overlap: int | None = None  # holdout rows that counted as no difference for want of overlap
    decision: str = ""  # promoted | rejected | error | skipped
    timestamp: str = ""
    coverage: str = ""  # "" not checked (no champion); "covered"; else what the challenger fails to cover
    rows_per_model: dict = field(default_factory=dict)  # held-out rows per model in the evidence (a new one: few)
    outcome_rows_per_model: dict = field(default_factory=dict)  # rows per model the outcome models learnt from

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        def est(e):
            return "n/a" if e is None else f"{e.value:.4f} [{e.ci_low:.4f}, {e.ci_high:.4f}]"

        before = ("no champion before" if self.champion_version is None
                  else f"champion before v{self.champion_version}")
        return (f"{self.name}: {self.decision} (challenger v{self.challenger_version}, {before}) "
                f"challenger {est(self.challenger)}, champion {est(self.champion)}, "
                f"difference {est(self.difference)}: {self.reason}")


COVERED = "covered"


def coverage_shortfall(challenger: Policy, champion: Policy) -> str:
    """What the challenger fails to cover of the champion, in words ("" when it covers it all): the
    champion's lambda range (the challenger's must contain it) and its models (the challenger's
    model list must hold every one)."""
    problems = []
    lo, hi = challenger.lam_range
    lo_c, hi_c = champion.lam_range

    def below(a, b):  # a < b beyond rounding
        return a < b and not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)

    if not (lo == lo and hi == hi) or below(lo_c, lo) or below(hi, hi_c):
        problems.append(f"it serves lambda {lo:g} to {hi:g}, the champion {lo_c:g} to {hi_c:g}")
    missing = [m for m in champion.models if m not in set(challenger.models)]
    if missing:
        problems.append(f"it lacks the champion's model(s) {', '.join(missing)}")
    return "; ".join(problems)


def policy_contributions(policy: Policy, ev: HoldoutEvidence, lam=None, models=None) -> np.ndarray:
    """Per-row DR contributions (n,) of ``policy`` on the held-out evidence (arms: ``models``,
    default the policy's), averaged over ``lam`` (a float or a list; None: the policy's own lambdas)."""
    models = models if models is not None else policy.models
    lams = policy.lambdas if lam is None else _lambdas(lam)
    if not lams:
        raise ValueError("no lambda to evaluate at")
    total = np.zeros(len(ev.X))
    for x in lams:
        total += ev.contributions(policy.probabilities(ev.X, x, models, ev.input_tokens), x)
    return total / len(lams)


def gate_contributions(challenger: Policy, champion: Policy, ev: HoldoutEvidence, lams, models,
                       overlap: float = 0.0, no_overlap: str = DEFAULT_NO_OVERLAP) -> tuple:
    """Per-row DR contributions (n,) of the two routers, averaged over ``lams``, as the gate pairs them.

    At each lambda, a row where either router's choice was served with a probability below
    ``overlap`` (the logs' ``propensities`` vectors, :meth:`HoldoutEvidence.supported`) counts as no
    difference (``no_overlap`` ``tie``: the champion's contribution for the challenger too) or with
    both routers' SWITCH contributions (``switch``). Rows without a logged vector, and every row when
    ``overlap`` is 0, keep their own.

    Returns (the challenger's own contributions, the challenger's and the champion's as the gate counts
    them, the champion's own, the number of rows without overlap where the two differ)."""
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0 <= overlap < 1:
        raise ValueError(f"promote overlap must be a number in [0, 1), got {overlap!r}")
    if no_overlap not in NO_OVERLAP:
        raise ValueError(f"promote no_overlap must be one of {', '.join(NO_OVERLAP)}, got {no_overlap!r}")
    n = len(ev.X)
    k_ch, g_ch, g_cp, k_cp = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    out = np.zeros(n, dtype=bool)
    for x in lams:
        p_ch = challenger.probabilities(ev.X, float(x), models, ev.input_tokens)
        p_cp = champion.probabilities(ev.X, float(x), models, ev.input_tokens)
        c_ch, c_cp = ev.contributions(p_ch, float(x)), ev.contributions(p_cp, float(x))
        keep = ev.supported(p_ch, overlap) & ev.supported(p_cp, overlap)
        out |= ~keep & (np.abs(p_ch - p_cp).sum(axis=1) > 1e-12)
        k_ch += c_ch
        k_cp += c_cp
        if no_overlap == "switch":
            g_ch += np.where(keep, c_ch, ev.switch_contributions(p_ch, float(x), overlap))
            g_cp += np.where(keep, c_cp, ev.switch_contributions(p_cp, float(x), overlap))
        else:
            g_ch += np.where(keep, c_ch, c_cp)
            g_cp += c_cp
    m = len(lams)
    return k_ch / m, g_ch / m, g_cp / m, k_cp / m, int(out.sum())


def gate_rule(challenger, champion, alpha: float = DEFAULT_ALPHA, margin: float = DEFAULT_MARGIN,
              without_overlap: int = 0, rule: str = DEFAULT_RULE,
              no_overlap: str = DEFAULT_NO_OVERLAP) -> tuple[bool, Estimate, str]:
    """The gate on paired per-row DR contributions (n,) of the challenger and the champion (same rows,
    same nuisances; :func:`gate_contributions`).

    ``rule`` ``estimate`` (the default): promote iff the mean difference is above ``-margin``;
    ``bound``: iff the lower end of its (1 - alpha) interval is. In the loop study, with rows
    without overlap counting as no difference, every promotion on the estimate was of a truly better
    challenger (11 of 11), and the bound's 95% held back most of them at these holdout sizes
    (benchmarks/results/gate_diagnosis/*.md). ``margin`` 0 (the default) asks for a gain; a positive
    margin tolerates a loss up to it (non-inferiority). ``without_overlap``: rows that counted as no
    difference for want of overlap, for the reason.

    Returns (promoted, the difference's estimate with its (1 - alpha) interval, the reason in words)."""
    if not (np.isfinite(margin) and margin >= 0):
        raise ValueError(f"promote margin must be a finite number >= 0, got {margin!r}")
    if rule not in RULES:
        raise ValueError(f"promote rule must be one of {', '.join(RULES)}, got {rule!r}")
    d = np.asarray(challenger, dtype=float) - np.asarray(champion, dtype=float)
    diff = summarize(d, alpha, "dr-diff")
    judged = diff.value if rule == "estimate" else diff.ci_low
    promoted = bool(judged > -margin)
    bound = "0" if margin == 0 else f"-{margin:g} (non-inferiority margin)"
    what = "DR value" if rule == "estimate" else "DR value's lower bound"
    interval = f"{1 - alpha:.0%} interval [{diff.ci_low:+.4f}, {diff.ci_high:+.4f}]"
    reason = (f"challenger - champion {what} {judged:+.4f} {'>' if promoted else '<='} {bound} on {len(d)} held-out "
              f"logs (difference {diff.value:+.4f}, {interval})")
    if without_overlap:
        counted = "count as no difference" if no_overlap == "tie" else "count on the outcome models (SWITCH)"
        reason += f"; {without_overlap} rows where a router's choice was served with too small a probability {counted}"
    return promoted, diff, reason


Evidence = HoldoutEvidence | Callable[[list], HoldoutEvidence] | None


def decide(challenger: Policy, champion: Policy | None, evidence: Evidence,
           settings: GateSettings | None = None) -> GateDecision:
    """The gate's decision (see the module docstring); nothing is written anywhere.

    Parameters
    ----------
    challenger, champion : Policy (champion None: there is none yet)
    evidence : HoldoutEvidence of the held-out logs with the challenger's models as arms, or a
        function ``models -> HoldoutEvidence`` called only when the decision needs evidence, or None
        (then a champion that the challenger covers raises ValueError: there is nothing to compare on)
    settings : GateSettings (default: params.yaml's defaults)

    Returns
    -------
    GateDecision with ``promoted``, ``decision`` (promoted | rejected), ``reason``, ``lambdas``,
    ``coverage`` and, when evidence was weighed, the estimates and ``without_overlap``.
    """
    s = settings or GateSettings()
    lams = evaluation_lambdas(challenger, s)
    d = GateDecision(lambdas=lams)
    if champion is None:
        ev = evidence(challenger.models) if callable(evidence) else evidence
        if ev is not None:
            d.rows_per_model = rows_per_model(ev, challenger.models)
            d.outcome_rows_per_model = outcome_rows_per_model(ev, d.rows_per_model)
            d.challenger = summarize(policy_contributions(challenger, ev, lams, challenger.models), s.alpha)
        d.promoted, d.decision = True, "promoted"
        d.reason = "no champion: the challenger becomes the first champion"
        return d
    shortfall = coverage_shortfall(challenger, champion)
    if shortfall:
        d.coverage, d.decision = shortfall, "rejected"
        d.reason = (f"the challenger does not cover the champion ({shortfall}): promoting it would refuse "
                    "requests the champion serves; retrain it on the champion's lambda range and models")
        return d
    d.coverage = COVERED
    ev = evidence(challenger.models) if callable(evidence) else evidence
    if ev is None:
        raise ValueError("a champion exists: held-out logs and their features are needed to compare")
    d.rows_per_model = rows_per_model(ev, challenger.models)
    d.outcome_rows_per_model = outcome_rows_per_model(ev, d.rows_per_model)
    c_ch, g_ch, g_cp, c_cp, d.without_overlap = gate_contributions(challenger, champion, ev, lams, challenger.models,
                                                                   s.overlap, s.no_overlap)
    d.challenger, d.champion = summarize(c_ch, s.alpha), summarize(c_cp, s.alpha)
    d.promoted, d.difference, d.reason = gate_rule(g_ch, g_cp, s.alpha, s.margin, d.without_overlap, s.rule,
                                                   s.no_overlap)
    if ev.support_rows is not None:
        d.reason += f"; outcome models on held-out and training rows per model {d.outcome_rows_per_model}"
    d.decision = "promoted" if d.promoted else "rejected"
    return d


def rows_per_model(ev: HoldoutEvidence, models) -> dict:
    """Held-out rows logged for each of ``models`` (a model new to the pool may have few or none)."""
    counts = np.bincount(np.asarray(ev.treatment, dtype=int), minlength=len(models))
    return {str(m): int(counts[k]) for k, m in enumerate(models)}


def outcome_rows_per_model(ev: HoldoutEvidence, held: dict) -> dict:
    """The rows each model gave the outcome models: its held-out rows (``held``, :func:`rows_per_model`)
    plus the evidence's ``support_rows`` (the training logs', when it has them)."""
    if ev.support_rows is None:
        return held
    return {m: n + int(ev.support_rows[k]) for k, (m, n) in enumerate(held.items())}


def uses_training_rows(outcome_rows: str) -> bool:
    """Whether ``promote.outcome_rows`` asks the evidence's outcome models to learn from the training logs
    too (:data:`OUTCOME_ROWS`; another value raises ValueError)."""
    if outcome_rows not in OUTCOME_ROWS:
        raise ValueError(f"promote outcome_rows must be one of {', '.join(OUTCOME_ROWS)}, got {outcome_rows!r}")
    return outcome_rows == "train+holdout"


def evaluation_lambdas(challenger: Policy, settings: GateSettings) -> list[float]:
    """The lambdas the gate compares at: the settings' (a float or a list), else the challenger's own."""
    return list(challenger.lambdas) if settings.lambdas is None else _lambdas(settings.lambdas)


def _lambdas(lam) -> list[float]:
    return [float(lam)] if np.isscalar(lam) else [float(x) for x in lam]
