"""Evidence-gated promotion: ``challenger`` becomes ``champion`` only if held-out logs say it is better.

Both routers are evaluated on the SAME held-out logs with the SAME nuisances, cross-fitted on the
held-out logs themselves by :func:`causal_router.causal.ope.fit_holdout_nuisances` (the
challenger's model list as arms; the logs' own ``propensity`` column when present; folds, seed and
clip from the training's :class:`~causal_router.causal.nuisances.NuisanceConfig`), and each
router's doubly robust (DR) policy value is the mean of its per-row DR contributions (averaged over
lambdas when several are given). This module adds only the MLflow side: loading the versions,
the gate's rule, the tags and the alias. The gate (:func:`gate_rule`) is a paired comparison::

    promote  iff  lower confidence bound of mean(challenger's - champion's per-row DR contribution)  >  0

Paired because both values are estimated on the same rows: where the two routers choose the same
model their contributions are identical and cancel, so the interval reflects only the rows where
they disagree. (Comparing the challenger's own lower bound with the champion's point value, the
earlier rule, charged the challenger with all the rows' noise: on a 60-row holdout it never
promoted; benchmarks/results/loop/reduced.csv.)

The evidence (values, interval, paired difference, compared version, reason, timestamp) is
written as ``promotion.*`` tags on the challenger version and ``promotion.last_challenge.*`` tags
on the champion version. Moving the champion is ``set_registered_model_alias(name, "champion",
version)``; the alias is never deleted, and a failure while evaluating never touches it (the
challenger is tagged ``promotion.decision=error``). Promotions of one store take turns under a file
lock, and a store that is damaged or lost a champion it held stops them with a
:class:`~causal_router.errors.StoreDamagedError` (:mod:`.integrity`): no challenger becomes "the
first champion" of a store that had one.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ..causal.nuisances import NuisanceConfig
from ..causal.ope import Estimate, HoldoutEvidence, summarize
from ..policy.data import holdout_evidence
from ..policy.routerset import RouterSet
from .pyfunc import INTERVAL_METHOD, RouterModel
from .runs import CHALLENGER, CHAMPION

log = logging.getLogger(__name__)

TAG = "promotion."
#: The gate's overlap threshold (params.yaml ``promote.overlap``): a holdout row counts only where the
#: logging policy served both routers' choices with at least this probability (:func:`gate_contributions`;
#: 0: every row). With it the difference's sign is right where the clipped DR's was biased
#: (benchmarks/results/gate_diagnosis/*.md).
DEFAULT_OVERLAP = 0.1
#: What the gate asks of the paired difference (params.yaml ``promote.rule``): ``estimate``, its point
#: estimate above ``-margin``; ``bound``, the lower end of its (1 - alpha) interval above ``-margin``.
RULES = ("estimate", "bound")
DEFAULT_RULE = "estimate"
CHAMPION_TAG = "promotion.last_challenge."


@dataclass
class Policy:
    """A router ready to evaluate: the set, the router it serves and its default lambda(s).

    ``lambdas`` is the lambda an endpoint model serves, or the whole grid for the interval model.
    """

    routerset: RouterSet
    method: str
    lambdas: list
    source: str = ""

    @property
    def models(self) -> list:
        return list(self.routerset.models)

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


def load_policy(model, method: str | None = None) -> Policy:
    """A :class:`Policy` from a model URI (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``,
    ``runs:/...``), a loaded pyfunc or :class:`RouterModel`, a :class:`RouterSet` or its directory.

    ``method`` overrides the model's configured router (default for bare sets: ``rm-interval``).
    """
    if isinstance(model, Policy):
        return model if method is None else Policy(model.routerset, method, model.lambdas, model.source)
    config: dict = {}
    source = str(model)
    if isinstance(model, RouterSet):
        rs, source = model, "router set"
    elif isinstance(model, (str, Path)) and Path(model).is_dir():
        rs = RouterSet.load(model)
    elif isinstance(model, RouterModel) or hasattr(model, "unwrap_python_model"):
        wrapped = model if isinstance(model, RouterModel) else model.unwrap_python_model()
        if not isinstance(wrapped, RouterModel):
            raise TypeError(f"{model!r} is not a causal-router pyfunc model")
        rs, config = wrapped.routerset, wrapped.config
    elif isinstance(model, str) and ":/" in model:
        from .artifacts import load_model
        from .tracking import ensure_configured

        ensure_configured()
        policy = load_policy(load_model(model), method)  # a version whose artifacts are gone: named
        policy.source = model
        return policy
    else:
        raise TypeError(f"cannot evaluate {model!r}: give a model URI, a RouterSet or its directory")
    method = method or config.get("method") or INTERVAL_METHOD
    rs.get(method)
    if config.get("kind") == "endpoint" or (config and method != INTERVAL_METHOD):
        lambdas = [float(config.get("lam", 0.0))]
    else:
        lambdas = [float(x) for x in rs.lambdas]
    return Policy(rs, method, lambdas, source)


def policy_contributions(policy: Policy, ev: HoldoutEvidence, lam=None, models=None) -> np.ndarray:
    """Per-row DR contributions (n,) of ``policy`` on the held-out evidence (arms: ``models``,
    default the policy's), averaged over ``lam`` (a float or a list; None: the policy's own lambdas)."""
    models = models if models is not None else policy.models
    lams = policy.lambdas if lam is None else ([float(lam)] if np.isscalar(lam) else [float(x) for x in lam])
    if not lams:
        raise ValueError("no lambda to evaluate at")
    total = np.zeros(len(ev.X))
    for x in lams:
        total += ev.contributions(policy.probabilities(ev.X, x, models, ev.input_tokens), x)
    return total / len(lams)


def gate_contributions(challenger: Policy, champion: Policy, ev: HoldoutEvidence, lams, models,
                       overlap: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Per-row DR contributions (n,) of the two routers, averaged over ``lams``, as the gate pairs them.

    At each lambda, a row where either router's choice was served with a probability below
    ``overlap`` (the logs' ``propensities`` vectors, :meth:`HoldoutEvidence.supported`) takes the
    champion's contribution for the challenger too: it counts as no difference. Rows without a
    logged vector, and every row when ``overlap`` is 0, keep their own.

    Returns (the challenger's own contributions, the challenger's as the gate counts them, the
    champion's, the number of rows without overlap where the two differ)."""
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0 <= overlap < 1:
        raise ValueError(f"promote overlap must be a number in [0, 1), got {overlap!r}")
    n = len(ev.X)
    k_ch, k_gate, k_cp = np.zeros(n), np.zeros(n), np.zeros(n)
    out = np.zeros(n, dtype=bool)
    for x in lams:
        p_ch = challenger.probabilities(ev.X, float(x), models, ev.input_tokens)
        p_cp = champion.probabilities(ev.X, float(x), models, ev.input_tokens)
        c_ch, c_cp = ev.contributions(p_ch, float(x)), ev.contributions(p_cp, float(x))
        keep = ev.supported(p_ch, overlap) & ev.supported(p_cp, overlap)
        out |= ~keep & (np.abs(p_ch - p_cp).sum(axis=1) > 1e-12)
        k_ch += c_ch
        k_gate += np.where(keep, c_ch, c_cp)
        k_cp += c_cp
    return k_ch / len(lams), k_gate / len(lams), k_cp / len(lams), int(out.sum())


def evaluate_policy_on_logs(model, logs: pd.DataFrame, X: np.ndarray, lam=None, models=None,
                            method: str | None = None, alpha: float = 0.05,
                            nuisances: NuisanceConfig | None = None) -> Estimate:
    """DR policy value of a router on held-out logs (nuisances cross-fitted on those logs).

    Parameters
    ----------
    model : model URI, pyfunc, RouterSet or its directory (see :func:`load_policy`)
    logs : DataFrame (n rows), X : ndarray (n, d) its prompts' features
    lam : float, list of float or None (the model's own lambda, or its grid for the interval router)
    models : list of str or None (the router's models)
    nuisances : NuisanceConfig or None (folds, seed, clip; default ``NuisanceConfig()``)
    """
    policy = load_policy(model, method)
    models = list(models or policy.models)
    ev = holdout_evidence(logs, X, models, nuisances)
    return summarize(policy_contributions(policy, ev, lam, models), alpha)


@dataclass
class PromotionDecision:
    """The outcome of :func:`promote` and the evidence behind it (estimates are DR policy values)."""

    name: str
    promoted: bool
    reason: str
    challenger_version: str | None = None
    champion_version: str | None = None  # before the decision
    challenger: Estimate | None = None
    champion: Estimate | None = None
    difference: Estimate | None = None  # paired challenger - champion
    lambdas: list = field(default_factory=list)
    without_overlap: int | None = None  # holdout rows that counted as no difference for want of overlap
    decision: str = ""  # promoted | rejected | error | skipped
    timestamp: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        def est(e):
            return "n/a" if e is None else f"{e.value:.4f} [{e.ci_low:.4f}, {e.ci_high:.4f}]"

        return (f"{self.name}: {self.decision} (challenger v{self.challenger_version}, champion before "
                f"v{self.champion_version}) challenger {est(self.challenger)}, champion {est(self.champion)}, "
                f"difference {est(self.difference)}: {self.reason}")


def _version(client, name: str, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _fmt(x) -> str:
    return "" if x is None else format(float(x), ".6g")


def gate_rule(challenger, champion, alpha: float = 0.05, margin: float = 0.0,
              without_overlap: int = 0, rule: str = DEFAULT_RULE) -> tuple[bool, Estimate, str]:
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
        reason += (f"; {without_overlap} rows where a router's choice was served with too small a probability "
                   "count as no difference")
    return promoted, diff, reason


def promote(name: str, holdout_logs: pd.DataFrame | None, X: np.ndarray | None, lam=None, client=None,
            alpha: float = 0.05, nuisances: NuisanceConfig | None = None,
            dry_run: bool = False, prices=None, margin: float = 0.0,
            overlap: float = DEFAULT_OVERLAP, rule: str = DEFAULT_RULE) -> PromotionDecision:
    """Promote ``name@challenger`` to ``name@champion`` if held-out evidence says it is better.

    Parameters
    ----------
    name : registered model name (e.g. ``causal-router-interval``)
    holdout_logs : DataFrame (n rows) of held-out observational logs (not used in training)
    X : ndarray (n, d) features of the held-out prompts, aligned with the rows
    lam : float, list of float or None
        Lambda(s) to compare at; a list averages the per-row DR contributions over lambdas.
        None: the challenger's configured lambda (endpoint models) or its grid (interval model).
    client : MlflowClient or None (default: the configured store)
    alpha : float
        The challenger's lower bound is of a two-sided (1 - alpha) interval.
    nuisances : NuisanceConfig or None
        Folds, seed and clip of the held-out nuisances (params.yaml's ``crossfit``; default
        ``NuisanceConfig()``), the same configuration training uses.
    dry_run : bool
        Decide and return, writing no tags and moving no alias.
    prices : price sheet ``{model: (input, output)}`` or None
    margin : float >= 0
        Non-inferiority margin (utility units): promote iff the lower bound of the difference is above
        ``-margin`` (:func:`gate_rule`); 0 asks for evidence of an improvement.
    overlap : float in [0, 1)
        Rows where either router's choice was logged with a probability below this (by the logs'
        ``propensities`` vectors) count as no difference (:func:`gate_contributions`); 0 keeps every row.
    rule : {"estimate", "bound"}
        Promote on the difference's point estimate or on its lower bound (:func:`gate_rule`).

    Returns
    -------
    PromotionDecision
    """
    from contextlib import nullcontext

    from . import integrity
    from .tracking import client as default_client
    from .tracking import ensure_configured

    c = client or default_client()
    uri = getattr(c, "_registry_uri", None) or ensure_configured()
    # one promotion at a time per store: the second decides against the champion the first left
    with nullcontext() if dry_run else integrity.promotion_lock(uri):
        # a damaged store, or one that lost a champion, stops here: no "first champion" without evidence
        expected = integrity.verify(uri, c)
        d = _decide(c, name, holdout_logs, X, lam, alpha, nuisances or NuisanceConfig(), prices, expected, margin,
                    overlap, rule)
        if dry_run or d.decision == "skipped":
            return d
        if d.promoted:
            c.set_registered_model_alias(name, CHAMPION, d.challenger_version)
            integrity.record_expected(uri, c)
        _write_tags(c, d, holdout_n=None if holdout_logs is None else len(holdout_logs),
                    clip=(nuisances or NuisanceConfig()).clip, overlap=overlap, rule=rule)
    log.info("%s", d.summary())
    return d


def _decide(c, name, holdout_logs, X, lam, alpha, nuisances, prices, expected, margin=0.0,
            overlap=DEFAULT_OVERLAP, rule=DEFAULT_RULE) -> PromotionDecision:
    """The gate's decision (nothing written)."""
    from ..errors import StoreDamagedError

    now = datetime.now(UTC).isoformat(timespec="seconds")
    challenger = _version(c, name, CHALLENGER)
    champion = _version(c, name, CHAMPION)
    d = PromotionDecision(name, False, "", str(challenger.version) if challenger else None,
                          str(champion.version) if champion else None, timestamp=now)
    if challenger is None:
        d.reason, d.decision = "no challenger", "skipped"
        return d
    if champion is not None and str(champion.version) == str(challenger.version):
        d.reason, d.decision = "the challenger is already the champion", "skipped"
        return d
    if champion is None and name in expected:  # verify() saw it; the alias vanished since
        raise StoreDamagedError(f"{name} had champion v{expected[name]} and now has none: the store was damaged; "
                                "nothing is promoted without evidence against a champion")
    try:
        ch = load_policy(f"models:/{name}/{d.challenger_version}")
        lams = ch.lambdas if lam is None else ([float(lam)] if np.isscalar(lam) else [float(x) for x in lam])
        d.lambdas = lams
        if champion is None:
            if holdout_logs is not None and X is not None:
                ev = holdout_evidence(holdout_logs, X, ch.models, nuisances, prices)
                d.challenger = summarize(policy_contributions(ch, ev, lams, ch.models), alpha)
            d.promoted, d.decision = True, "promoted"
            d.reason = "no champion: the challenger becomes the first champion"
        else:
            if holdout_logs is None or X is None:
                raise ValueError("a champion exists: held-out logs and their features are needed to compare")
            cp = load_policy(f"models:/{name}/{d.champion_version}")
            ev = holdout_evidence(holdout_logs, X, ch.models, nuisances, prices)
            c_ch, k_gate, c_cp, d.without_overlap = gate_contributions(ch, cp, ev, lams, ch.models, overlap)
            d.challenger, d.champion = summarize(c_ch, alpha), summarize(c_cp, alpha)
            d.promoted, d.difference, reason = gate_rule(k_gate, c_cp, alpha, margin, d.without_overlap, rule)
            d.decision = "promoted" if d.promoted else "rejected"
            d.reason = f"{reason} (propensity {ev.propensity})"
    except Exception as err:  # evaluation failed: never touch the champion
        log.exception("promotion of %s v%s failed while evaluating", name, d.challenger_version)
        d.promoted, d.decision = False, "error"
        d.reason = f"evaluation failed: {type(err).__name__}: {err}"[:5000]
    return d


def _write_tags(c, d: PromotionDecision, holdout_n, clip, overlap=DEFAULT_OVERLAP, rule=DEFAULT_RULE):
    tags = {
        "decision": d.decision, "reason": d.reason, "timestamp": d.timestamp,
        "compared_to_version": d.champion_version or "",
        "dr_value": _fmt(d.challenger.value if d.challenger else None),
        "ci_low": _fmt(d.challenger.ci_low if d.challenger else None),
        "ci_high": _fmt(d.challenger.ci_high if d.challenger else None),
        "champion_value": _fmt(d.champion.value if d.champion else None),
        "diff": _fmt(d.difference.value if d.difference else None),
        "diff_ci_low": _fmt(d.difference.ci_low if d.difference else None),
        "diff_ci_high": _fmt(d.difference.ci_high if d.difference else None),
        "lambdas": ",".join(format(x, "g") for x in d.lambdas),
        "n_holdout": "" if holdout_n is None else str(holdout_n),
        "clip": format(clip, "g"), "estimator": "dr", "overlap": format(overlap, "g"), "rule": rule,
        "n_without_overlap": "" if d.without_overlap is None else str(d.without_overlap),
    }
    try:
        for k, v in tags.items():
            c.set_model_version_tag(d.name, d.challenger_version, TAG + k, v)
        if d.champion_version:
            champ = {"version": d.challenger_version, "decision": d.decision, "timestamp": d.timestamp,
                     "value": _fmt(d.champion.value if d.champion else None),
                     "challenger_value": _fmt(d.challenger.value if d.challenger else None)}
            for k, v in champ.items():
                c.set_model_version_tag(d.name, d.champion_version, CHAMPION_TAG + k, v)
    except Exception:  # the decision stands; the evidence could not be recorded
        log.exception("could not write promotion tags on %s", d.name)
