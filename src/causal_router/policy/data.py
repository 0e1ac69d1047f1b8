"""What routers learn from: logs as arrays, cross-fitted nuisances and DR utilities."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from ..causal.crossfit import CrossFitter, ScoredRows
from ..causal.nuisances import NuisanceConfig
from ..causal.scores import DEFAULT_CLIP, ClipReport, Utilities, clip_report, utilities
from ..causal.selection import LoggedEvidence
from ..data import schema as S

log = logging.getLogger(__name__)


@dataclass
class RoutingData:
    """Training and validation material shared by every router.

    Attributes
    ----------
    models : list of str, length K
    X : ndarray (n, d)             training features
    treatment : ndarray (n,) int   logged model index
    quality, cost : ndarray (n,)   observed outcomes of the logged model
    input_tokens : ndarray (n,) or None
    utilities : Utilities          cross-fitted pseudo-outcomes, (n, K) each
    crossfitter : CrossFitter      fitted; its refit models predict nuisances for new prompts
    X_val : ndarray (m, d) or None
    val_utilities : Utilities or None   DR pseudo-outcomes on validation logs (models fitted on train)
    val_input_tokens : ndarray (m,) or None
    clip_report : ClipReport or None
    val_evidence : LoggedEvidence or None   validation logs with their nuisances (policy selection)
    """

    models: list
    X: np.ndarray
    treatment: np.ndarray
    quality: np.ndarray
    cost: np.ndarray
    input_tokens: np.ndarray | None
    utilities: Utilities
    crossfitter: CrossFitter
    X_val: np.ndarray | None = None
    val_utilities: Utilities | None = None
    val_input_tokens: np.ndarray | None = None
    clip_report: ClipReport | None = None
    val_evidence: LoggedEvidence | None = None

    @property
    def n_arms(self) -> int:
        return len(self.models)

    @cached_property
    def arm_posterior(self):
        """The outcome model's :class:`~causal_router.policy.posterior.ArmPosterior` (None without
        logged treatments or an outcome model); computed once, shared by the routers."""
        from .posterior import arm_posterior

        return arm_posterior(self)


def full_feedback_data(ff, X: np.ndarray, train_idx, val_idx, crossfitter=None) -> RoutingData:
    """Routing data from a full-feedback table: every model's true outcome (n, K) for the prompts at
    ``train_idx`` (n,) and ``val_idx`` (m,) of ``ff``, with features ``X`` (n_prompts, d). Nothing was
    logged, so the learner reads utilities and never a treatment. ``crossfitter``: outcome models in the
    place of a fitted cross-fitter (the direct-method start), or None for a bare network."""
    tokens = None if ff.input_tokens is None else np.asarray(ff.input_tokens, float)
    return RoutingData(
        models=list(ff.models), X=X[train_idx], treatment=None, quality=None, cost=None,
        input_tokens=None if tokens is None else tokens[train_idx],
        utilities=Utilities(ff.scores[train_idx], ff.costs[train_idx]), crossfitter=crossfitter,
        X_val=X[val_idx], val_utilities=Utilities(ff.scores[val_idx], ff.costs[val_idx]),
        val_input_tokens=None if tokens is None else tokens[val_idx])


def _col(df: pd.DataFrame, name: str):
    return df[name].to_numpy(dtype=float) if name in df else None


def encode_treatment(logs: pd.DataFrame, models) -> np.ndarray:
    """Logged model names -> indices into ``models``; unknown names raise."""
    index = {m: k for k, m in enumerate(models)}
    unknown = sorted(set(logs[S.MODEL]) - set(index))
    if unknown:
        raise ValueError(f"logs name models not in the model list: {unknown}")
    return logs[S.MODEL].map(index).to_numpy(dtype=int).copy()  # writable: torch wraps it


def price_array(prices, models) -> np.ndarray | None:
    """A price sheet ``{model: (input, output)}`` as an array (K, 2) in ``models`` order, or None."""
    if prices is None:
        return None
    missing = [m for m in models if m not in prices]
    if missing:
        raise ValueError(f"price sheet lacks models {missing}")
    return np.array([prices[m] for m in models], dtype=float)


def log_arrays(logs: pd.DataFrame, models) -> dict:
    """A log's columns as the arrays the nuisance models take: ``treatment`` (n,) int, ``quality``,
    ``cost`` (n,), and ``input_tokens``, ``output_tokens``, ``propensity`` (n,) or None."""
    return {"treatment": encode_treatment(logs, models), "quality": logs[S.SCORE].to_numpy(float),
            "cost": logs[S.COST].to_numpy(float), "input_tokens": _col(logs, S.INPUT_TOKENS),
            "output_tokens": _col(logs, S.OUTPUT_TOKENS), "propensity": _col(logs, S.PROPENSITY)}


def scored_rows(ff, X: np.ndarray, models) -> ScoredRows:
    """An evaluation set (a :class:`~causal_router.data.matrices.FullFeedback`: models run on the same
    prompts) as rows for the outcome models, arms numbered as ``models``.

    ``X`` : (n_prompts, d), aligned with ``ff.prompt_ids``. The table may score a subset of ``models``
    (a cell without a score is skipped); a model outside ``models`` is an error that names it.
    """
    models = list(models)
    unknown = sorted(set(map(str, ff.models)) - set(models))
    if unknown:
        raise ValueError(f"the evaluation set scores model(s) the routers do not route to: {unknown}")
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or len(X) != ff.n_prompts:
        raise ValueError(f"X must have shape (n_prompts, d) with n_prompts = {ff.n_prompts}, got {X.shape}")
    rows, cols = np.nonzero(np.isfinite(ff.scores) & np.isfinite(ff.costs))
    arm = np.array([models.index(str(m)) for m in ff.models], dtype=int)
    return ScoredRows(X=X[rows], treatment=arm[cols], quality=ff.scores[rows, cols], cost=ff.costs[rows, cols],
                      input_tokens=None if ff.input_tokens is None else ff.input_tokens[rows],
                      output_tokens=None if ff.output_tokens is None else ff.output_tokens[rows, cols])


def build_routing_data(train: pd.DataFrame, X: np.ndarray, val: pd.DataFrame | None = None,
                       X_val: np.ndarray | None = None, models=None, *, cv: int = 5,
                       propensity: str = "fitted", clip: float = DEFAULT_CLIP, estimator: str = "dr",
                       cost_estimator: str | None = None, prices=None, quality_model=None,
                       propensity_model=None, random_state: int = 0, fold_map=None,
                       scored: ScoredRows | None = None) -> RoutingData:
    """Cross-fit nuisances on the training logs and build pseudo-utilities for train and val.

    Parameters
    ----------
    train, val : observational logs (DataFrames; docs/architecture.md, data contract)
    X, X_val : ndarray (n, d), (m, d)
        Prompt features aligned with the rows of ``train`` and ``val``.
    models : sequence of str or None
        The K models, in index order (default: sorted names in ``train``).
    propensity : {"fitted", "logged"}
    clip : float
        Propensity floor for DR weights (reported, never silent).
    prices : mapping model -> (usd_per_m_input, usd_per_m_output) or None
        Price sheet; without it, prices are recovered from the logs' costs and token counts.
    fold_map : callable or None
        Runs the cross-fitting folds (see :meth:`CrossFitter.fit`).
    scored : ScoredRows or None
        An evaluation set's outcomes (see :func:`scored_rows`): the quality and cost models learn from
        them too; the propensities and the DR utilities stay the logs' own.
    """
    models = list(models) if models is not None else sorted(train[S.MODEL].unique())
    K = len(models)
    tr = log_arrays(train, models)
    t, a, c, tin = tr["treatment"], tr["quality"], tr["cost"], tr["input_tokens"]
    # rare models can be absent from a cross-fitting fold: the pooled model still predicts them
    cf = NuisanceConfig(cv, propensity, clip, random_state).crossfitter(
        K, price_array(prices, models), require_all_arms=False, quality_model=quality_model,
        propensity_model=propensity_model)
    cf.fit(X, t, a, c, tin, tr["output_tokens"], logged_propensity=tr["propensity"], fold_map=fold_map,
           n_arms=K, scored=scored)
    U = utilities(t, a, c, cf.nuisances_, estimator, clip, cost_estimator)
    report = clip_report(t, cf.nuisances_.logged_propensity, K, clip, models)
    log.info("%s", report.summary())
    data = RoutingData(models, X, t, a, c, tin, U, cf, clip_report=report)
    if val is not None:
        va = log_arrays(val, models)
        nv = cf.predict(X_val, va["treatment"], va["input_tokens"], va["propensity"])
        data.X_val, data.val_input_tokens = X_val, va["input_tokens"]
        data.val_utilities = utilities(va["treatment"], va["quality"], va["cost"], nv, estimator, clip,
                                       cost_estimator)
        data.val_evidence = LoggedEvidence(va["treatment"], va["quality"], va["cost"], nv)
    return data


def holdout_evidence(logs: pd.DataFrame, X: np.ndarray, models, config=None, prices=None, support=None):
    """Held-out logs (a DataFrame, n rows) and their features X (n, d) as the evidence of
    :func:`causal_router.causal.ope.fit_holdout_nuisances` (arms = ``models``, in that order).

    ``config`` : NuisanceConfig or None; ``prices`` : price sheet ``{model: (input, output)}`` or None.
    ``support`` : None, or a list of (logs DataFrame (m_j rows), features (m_j, d)) outside the holdout
    (the training logs) that the outcome models learn from too (:func:`log_support`).
    """
    from ..causal.ope import fit_holdout_nuisances

    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or len(X) != len(logs):
        raise ValueError(f"X must have shape (n, d) with n = {len(logs)} holdout rows, got {X.shape}")
    models = list(models)
    arr = log_arrays(logs, models)
    groups = logs[S.PROMPT_ID].to_numpy() if S.PROMPT_ID in logs and logs[S.PROMPT_ID].duplicated().any() else None
    ev = fit_holdout_nuisances(X, arr["treatment"], arr["quality"], arr["cost"], len(models), arr["input_tokens"],
                               arr["output_tokens"], arr["propensity"], groups, config,
                               price_array(prices, models), log_support(support, models))
    ev.logging = S.propensity_matrix(logs, models)
    return ev


def log_support(parts, models) -> ScoredRows | None:
    """Logs outside the holdout (a list of (logs DataFrame (m_j rows), features (m_j, d)); None or empty:
    None) as rows for the gate's outcome models, arms numbered as ``models``; rows of a model outside
    ``models`` (one removed from the pool) are left out."""
    kept = []
    for lg, x in parts or []:
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or len(x) != len(lg):
            raise ValueError(f"support features must have shape (m, d) with m = {len(lg)} rows, got {x.shape}")
        mask = lg[S.MODEL].isin(list(models)).to_numpy()
        if mask.any():
            kept.append((lg[mask], x[mask]))
    if not kept:
        return None
    logs = pd.concat([lg for lg, _ in kept], ignore_index=True)
    arr = log_arrays(logs, models)
    return ScoredRows(X=np.vstack([x for _, x in kept]), treatment=arr["treatment"], quality=arr["quality"],
                      cost=arr["cost"], input_tokens=arr["input_tokens"], output_tokens=arr["output_tokens"])
