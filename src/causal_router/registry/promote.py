"""Evidence-gated promotion in the registry: ``challenger`` becomes ``champion`` only if the gate says so.

The decision is :func:`causal_router.promotion.gate.decide`'s (the one gate: coverage of the
champion's lambda range and models, then the paired, overlap-aware DR difference on held-out logs;
its docstring has the rule). This module adds only the MLflow side: loading the two versions as
:class:`~causal_router.promotion.gate.Policy` (:func:`load_policy`), the held-out evidence (nuisances
cross-fitted on the held-out logs themselves by :func:`causal_router.policy.data.holdout_evidence`:
the challenger's model list as arms; the logs' own ``propensity`` column when present; folds, seed
and clip from the training's :class:`~causal_router.causal.nuisances.NuisanceConfig`), the tags and
the alias.

The evidence (values, interval, paired difference, coverage, compared version, reason, timestamp)
is written as ``promotion.*`` tags on the challenger version and ``promotion.last_challenge.*`` tags
on the champion version. Moving the champion is ``set_registered_model_alias(name, "champion",
version)``; the alias is never deleted, and a failure while evaluating never touches it (the
challenger is tagged ``promotion.decision=error``). Promotions of one store take turns under a file
lock, and a store that is damaged or lost a champion it held stops them with a
:class:`~causal_router.errors.StoreDamagedError` (:mod:`.integrity`): no challenger becomes "the
first champion" of a store that had one.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ..causal.nuisances import NuisanceConfig
from ..causal.ope import Estimate, summarize
from ..policy.data import holdout_evidence
from ..policy.routerset import RouterSet
from ..promotion.gate import (
    DEFAULT_NO_OVERLAP,
    DEFAULT_OUTCOME_ROWS,
    DEFAULT_OVERLAP,
    DEFAULT_RULE,
    GateDecision,
    GateSettings,
    Policy,
    decide,
    evaluation_lambdas,
    policy_contributions,
    uses_training_rows,
)
from .names import CHALLENGER, CHAMPION, model_uri
from .pyfunc import INTERVAL_METHOD, RouterModel

log = logging.getLogger(__name__)

TAG = "promotion."
CHAMPION_TAG = "promotion.last_challenge."


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


def _version(client, name: str, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _fmt(x) -> str:
    return "" if x is None else format(float(x), ".6g")


def promote(name: str, holdout_logs: pd.DataFrame | None, X: np.ndarray | None, lam=None, client=None,
            alpha: float = 0.05, nuisances: NuisanceConfig | None = None,
            dry_run: bool = False, prices=None, margin: float = 0.0,
            overlap: float = DEFAULT_OVERLAP, rule: str = DEFAULT_RULE,
            no_overlap: str = DEFAULT_NO_OVERLAP, outcome_rows: str = DEFAULT_OUTCOME_ROWS,
            support=None) -> GateDecision:
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
        ``-margin`` (``promotion.gate.gate_rule``); 0 asks for evidence of an improvement.
    overlap : float in [0, 1)
        Rows where either router's choice was logged with a probability below this (by the logs'
        ``propensities`` vectors) count as no difference (``promotion.gate.gate_contributions``); 0 keeps every row.
    rule : {"estimate", "bound"}
        Promote on the difference's point estimate or on its lower bound (``promotion.gate.gate_rule``).
    no_overlap : {"tie", "switch"}
        What a row without overlap counts as: no difference, or both routers' SWITCH contributions (the
        outcome models for the models served below ``overlap``; ``promotion.gate.NO_OVERLAP``).
    outcome_rows : {"holdout", "train+holdout"}
        What the evidence's outcome models learn from: the held-out logs' other folds, or those plus
        ``support`` (``promotion.gate.OUTCOME_ROWS``); ``train+holdout`` without ``support`` is an error.
    support : list of (logs DataFrame (m_j rows), features ndarray (m_j, d)) or None
        The training logs (train, val), read only with ``outcome_rows`` ``train+holdout``.

    Returns
    -------
    GateDecision (a challenger that does not cover the champion's lambda range and models is
    rejected, :func:`~causal_router.promotion.gate.coverage_shortfall`)
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
                    overlap, rule, no_overlap, outcome_rows, support)
        if dry_run or d.decision == "skipped":
            return d
        if d.promoted:
            c.set_registered_model_alias(name, CHAMPION, d.challenger_version)
            integrity.record_expected(uri, c)
        _write_tags(c, d, holdout_n=None if holdout_logs is None else len(holdout_logs),
                    clip=(nuisances or NuisanceConfig()).clip, overlap=overlap, rule=rule, no_overlap=no_overlap,
                    outcome_rows=outcome_rows)
    log.info("%s", d.summary())
    return d


def _decide(c, name, holdout_logs, X, lam, alpha, nuisances, prices, expected, margin=0.0,
            overlap=DEFAULT_OVERLAP, rule=DEFAULT_RULE, no_overlap=DEFAULT_NO_OVERLAP,
            outcome_rows=DEFAULT_OUTCOME_ROWS, support=None) -> GateDecision:
    """The gate's decision (nothing written)."""
    from ..errors import StoreDamagedError

    now = datetime.now(UTC).isoformat(timespec="seconds")
    challenger = _version(c, name, CHALLENGER)
    champion = _version(c, name, CHAMPION)
    d = GateDecision(name, False, "", str(challenger.version) if challenger else None,
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
        ch = load_policy(model_uri(name, version=d.challenger_version))
        cp = None if champion is None else load_policy(model_uri(name, version=d.champion_version))
        evidence = None
        borrow = uses_training_rows(outcome_rows)
        if borrow and not support:
            raise ValueError("promote outcome_rows train+holdout needs the training logs (support)")
        if holdout_logs is not None and X is not None:
            evidence = _Evidence(holdout_logs, X, nuisances, prices, support if borrow else None)
        settings = GateSettings(alpha=alpha, margin=margin, overlap=overlap, rule=rule, lambdas=lam,
                                no_overlap=no_overlap, outcome_rows=outcome_rows)
        d.lambdas = evaluation_lambdas(ch, settings)
        out = decide(ch, cp, evidence, settings)
        d.promoted, d.decision, d.reason, d.coverage = out.promoted, out.decision, out.reason, out.coverage
        d.challenger, d.champion, d.difference = out.challenger, out.champion, out.difference
        d.without_overlap = out.without_overlap
        d.rows_per_model, d.outcome_rows_per_model = out.rows_per_model, out.outcome_rows_per_model
        if cp is not None and evidence is not None and evidence.built is not None:
            d.reason += f" (propensity {evidence.built.propensity})"
    except Exception as err:  # evaluation failed: never touch the champion
        log.exception("promotion of %s v%s failed while evaluating", name, d.challenger_version)
        d.promoted, d.decision = False, "error"
        d.reason = f"evaluation failed: {type(err).__name__}: {err}"[:5000]
    return d


class _Evidence:
    """The held-out evidence, built when the gate first asks for it (with the challenger's models as arms)."""

    def __init__(self, logs, X, nuisances, prices, support=None):
        self.logs, self.X, self.nuisances, self.prices, self.built = logs, X, nuisances, prices, None
        self.support = support

    def __call__(self, models):
        self.built = holdout_evidence(self.logs, self.X, models, self.nuisances, self.prices, self.support)
        return self.built


def _write_tags(c, d: GateDecision, holdout_n, clip, overlap=DEFAULT_OVERLAP, rule=DEFAULT_RULE,
                no_overlap=DEFAULT_NO_OVERLAP, outcome_rows=DEFAULT_OUTCOME_ROWS):
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
        "no_overlap": no_overlap, "outcome_rows": outcome_rows,
        "rows_per_model": ",".join(f"{m}={n}" for m, n in d.rows_per_model.items()),
        "outcome_rows_per_model": ",".join(f"{m}={n}" for m, n in d.outcome_rows_per_model.items()),
        "coverage": d.coverage,
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
