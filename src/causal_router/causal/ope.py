"""Off-policy evaluation of a router on logs: DM, IPW, SNIPS and DR values with confidence intervals."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import norm

from .checks import check_ope_inputs
from .crossfit import Nuisances, ScoredRows
from .nuisances import NuisanceConfig
from .scores import DEFAULT_CLIP, NO_CLIP, pseudo_outcomes

OPE_ESTIMATORS = ("dm", "ipw", "snips", "dr")


@dataclass(frozen=True)
class Estimate:
    """A policy value with a normal (influence-function) confidence interval."""

    estimator: str
    value: float
    se: float
    ci_low: float
    ci_high: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def as_policy(actions_or_probs, n_arms: int) -> np.ndarray:
    """Actions (n,) int or probabilities (n, K) -> probabilities (n, K)."""
    a = np.asarray(actions_or_probs)
    if a.ndim == 2:
        return a.astype(float)
    pi = np.zeros((len(a), n_arms))
    pi[np.arange(len(a)), a.astype(int)] = 1.0
    return pi


def _estimate(name, contrib, alpha, value=None):
    contrib = np.asarray(contrib, dtype=float)
    n = len(contrib)
    value = float(np.mean(contrib)) if value is None else value
    se = float(np.std(contrib, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    z = norm.ppf(1 - alpha / 2)
    return Estimate(name, value, se, value - z * se, value + z * se, n)


def contributions(policy, treatment, quality, cost, nuisances, lam: float, estimator: str = "dr",
                  clip: float = NO_CLIP):
    """Per-row contributions whose mean is the policy value (SNIPS: before normalisation).

    Parameters
    ----------
    policy : ndarray (n,) int actions or (n, K) probabilities
    treatment : ndarray (n,) int
    quality, cost : ndarray (n,)
    nuisances : Nuisances for these rows (``quality``, ``cost`` (n, K); ``logged_propensity`` (n,))
    lam : float
    estimator : one of OPE_ESTIMATORS
    clip : float

    Returns
    -------
    ndarray (n,)
    """
    if estimator not in OPE_ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {OPE_ESTIMATORS}")
    K = nuisances.quality.shape[1]
    t = check_ope_inputs(policy, treatment, quality, cost, nuisances, K)
    pi = as_policy(policy, K)
    rows = np.arange(len(t))
    if estimator in ("dm", "dr"):
        e = nuisances.logged_propensity
        Gq = pseudo_outcomes(t, quality, nuisances.quality, e, estimator, clip)
        Gc = pseudo_outcomes(t, cost, nuisances.cost, e, estimator, clip)
        return np.sum(pi * (Gq - lam * Gc), axis=1)
    w = pi[rows, t] / np.maximum(nuisances.logged_propensity, clip)
    return w * (np.asarray(quality) - lam * np.asarray(cost))


def policy_value(policy, treatment, quality, cost, nuisances, lam: float, estimator: str = "dr",
                 clip: float = NO_CLIP, alpha: float = 0.05) -> Estimate:
    """Value of ``policy`` at ``lam`` estimated on logs, with a (1 - alpha) confidence interval."""
    c = contributions(policy, treatment, quality, cost, nuisances, lam, estimator, clip)
    if estimator != "snips":
        return _estimate(estimator, c, alpha)
    t = np.asarray(treatment, dtype=int)
    pi = as_policy(policy, nuisances.quality.shape[1])
    w = pi[np.arange(len(t)), t] / np.maximum(nuisances.logged_propensity, clip)
    value = float(c.sum() / w.sum())
    # delta method for the ratio estimator
    y = np.asarray(quality) - lam * np.asarray(cost)
    return _estimate("snips", w * (y - value) / w.mean() + value, alpha, value)


def value_difference(policy_a, policy_b, treatment, quality, cost, nuisances, lam: float,
                     clip: float = NO_CLIP, alpha: float = 0.05) -> Estimate:
    """Paired DR estimate of ``V(a) - V(b)``: the rows' shared noise cancels."""
    ca = contributions(policy_a, treatment, quality, cost, nuisances, lam, "dr", clip)
    cb = contributions(policy_b, treatment, quality, cost, nuisances, lam, "dr", clip)
    return _estimate("dr-diff", ca - cb, alpha)


def summarize(contrib, alpha: float = 0.05, name: str = "dr") -> Estimate:
    """Mean of per-row contributions (n,) with a normal (1 - alpha) interval."""
    return _estimate(name, contrib, alpha)


def supported(logging, policy, threshold: float) -> np.ndarray:
    """Rows (n,) bool where ``policy`` (n, K) probabilities puts all its mass on models the logging
    policy (``logging`` (n, K), the logged ``propensities``, NaN on rows without one; or None) served
    with probability >= ``threshold``: there its DR contribution has unclipped weights and is unbiased.
    Rows without a logged vector count as supported, as do all rows when ``threshold`` is 0."""
    pi = np.asarray(policy, dtype=float)
    if logging is None or threshold <= 0:
        return np.ones(len(pi), dtype=bool)
    thin = np.where(np.isnan(logging), np.inf, logging) < threshold
    return (pi * thin).sum(axis=1) <= 1e-12


@dataclass
class HoldoutEvidence:
    """Held-out logs as arrays plus their cross-fitted nuisances, shared by every policy evaluated.

    Attributes
    ----------
    X : ndarray (n, d)
    treatment : ndarray (n,) int in [0, K)
    quality, cost : ndarray (n,)
    input_tokens : ndarray (n,) or None
    nuisances : Nuisances       cross-fitted on these rows
    propensity : str            "fitted" or "logged"
    clip : float                propensity floor of the DR weights
    logging : ndarray (n, K) or None
        The logged probability vectors (``propensities``), NaN on rows that carry none.
    support_rows : ndarray (K,) int or None
        Rows per arm that the outcome models learnt from beyond these logs (``support`` of
        :func:`fit_holdout_nuisances`, e.g. the training logs); None: the held-out rows alone.
    """

    X: np.ndarray
    treatment: np.ndarray
    quality: np.ndarray
    cost: np.ndarray
    input_tokens: np.ndarray | None
    nuisances: Nuisances
    propensity: str
    clip: float
    logging: np.ndarray | None = None
    support_rows: np.ndarray | None = None

    @property
    def n_arms(self) -> int:
        return self.nuisances.quality.shape[1]

    def supported(self, policy, threshold: float) -> np.ndarray:
        """:func:`supported` on these logs' probability vectors."""
        return supported(self.logging, as_policy(policy, self.n_arms), threshold)

    def contributions(self, policy, lam: float) -> np.ndarray:
        """Per-row DR contributions (n,) of ``policy`` ((n,) actions or (n, K) probabilities) at ``lam``."""
        return contributions(policy, self.treatment, self.quality, self.cost, self.nuisances, lam, "dr", self.clip)

    def switch_contributions(self, policy, lam: float, threshold: float) -> np.ndarray:
        """Per-row SWITCH contributions (n,) (Wang, Agarwal and Dudik, ICML 2017): the DR pseudo-outcome of
        a model the logs served with probability >= ``threshold``, the outcome models' prediction (the
        direct method) of one served below it. Where ``policy`` puts its mass on well-served models this
        is :meth:`contributions`; rows without a logged vector, and every row at threshold 0, too."""
        pi = as_policy(policy, self.n_arms)
        e = self.nuisances.logged_propensity
        Gq = pseudo_outcomes(self.treatment, self.quality, self.nuisances.quality, e, "dr", self.clip)
        Gc = pseudo_outcomes(self.treatment, self.cost, self.nuisances.cost, e, "dr", self.clip)
        if self.logging is not None and threshold > 0:
            thin = np.where(np.isnan(self.logging), np.inf, self.logging) < threshold
            Gq = np.where(thin, self.nuisances.quality, Gq)
            Gc = np.where(thin, self.nuisances.cost, Gc)
        return np.sum(pi * (Gq - lam * Gc), axis=1)


def fit_holdout_nuisances(X, treatment, quality, cost, n_arms: int, input_tokens=None, output_tokens=None,
                          logged_propensity=None, groups=None, config: NuisanceConfig | None = None,
                          prices=None, support: ScoredRows | None = None) -> HoldoutEvidence:
    """Cross-fit nuisances on held-out logs, for evaluating routers on them.

    Parameters
    ----------
    X : ndarray (n, d)
    treatment : ndarray (n,) int in [0, n_arms)
    quality, cost : ndarray (n,)
    n_arms : int
    input_tokens, output_tokens, logged_propensity : ndarray (n,) or None
    groups : ndarray (n,) or None
        Rows of one group (prompt) never straddle folds.
    config : NuisanceConfig or None
        Folds, seed and clip (default: ``NuisanceConfig()``). The propensity source is the logs'
        own when ``logged_propensity`` is complete, else fitted.
    prices : ndarray (n_arms, 2) or None
        With a price sheet an arm absent from small held-out logs is still costed exactly (and its
        quality predicted by the pooled model); without one every arm needs rows.
    support : ScoredRows or None
        Rows outside the held-out logs (m rows, e.g. the training logs) that the outcome models of
        every fold learn from too (never the propensity model; no DR correction is made on them):
        a held-out fold is scored by outcome models fitted on the other folds plus ``support``, still
        independent of it, so DR stays unbiased, and a model with few held-out rows (a new one) is
        predicted from all its rows (then an arm needs rows in the held-out logs or in ``support``).
    """
    config = config or NuisanceConfig()
    X = np.asarray(X, dtype=float)
    t = np.asarray(treatment)
    if X.ndim != 2 or len(X) != len(t):
        raise ValueError(f"X must have shape (n, d) with n = {len(t)} holdout rows, got {X.shape}")
    t = check_ope_inputs(None, t, quality, cost, None, n_arms)
    if len(t) < 2 * config.cv:
        raise ValueError(f"{len(t)} holdout rows are too few for {config.cv}-fold cross-fitting")
    has_p = logged_propensity is not None and not np.isnan(np.asarray(logged_propensity, dtype=float)).any()
    propensity = "logged" if has_p else "fitted"
    has_support = support is not None and len(support) > 0
    cf = config.crossfitter(n_arms, prices, require_all_arms=prices is None, propensity=propensity)
    cf.fit(X, t, quality, cost, input_tokens, output_tokens, logged_propensity=logged_propensity, groups=groups,
           n_arms=n_arms, scored=support if has_support else None)
    rows = np.bincount(np.asarray(support.treatment, dtype=int), minlength=n_arms) if has_support else None
    return HoldoutEvidence(X, t, np.asarray(quality, float), np.asarray(cost, float), input_tokens, cf.nuisances_,
                           propensity, config.clip, support_rows=rows)


__all__ = ["DEFAULT_CLIP", "OPE_ESTIMATORS", "Estimate", "HoldoutEvidence", "as_policy", "contributions",
           "fit_holdout_nuisances", "policy_value", "summarize", "supported", "value_difference"]
