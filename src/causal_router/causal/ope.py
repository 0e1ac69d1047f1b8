"""Off-policy evaluation of a router on logs: DM, IPW, SNIPS and DR values with confidence intervals."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import norm

from .scores import pseudo_outcomes

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
    n = len(contrib)
    value = float(np.mean(contrib)) if value is None else value
    se = float(np.std(contrib, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    z = norm.ppf(1 - alpha / 2)
    return Estimate(name, value, se, value - z * se, value + z * se, n)


def contributions(policy, treatment, quality, cost, nuisances, lam: float, estimator: str = "dr", clip: float = 0.0):
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
    t = np.asarray(treatment, dtype=int)
    K = nuisances.quality.shape[1]
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
                 clip: float = 0.0, alpha: float = 0.05) -> Estimate:
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
                     clip: float = 0.0, alpha: float = 0.05) -> Estimate:
    """Paired DR estimate of ``V(a) - V(b)``: the rows' shared noise cancels."""
    ca = contributions(policy_a, treatment, quality, cost, nuisances, lam, "dr", clip)
    cb = contributions(policy_b, treatment, quality, cost, nuisances, lam, "dr", clip)
    return _estimate("dr-diff", ca - cb, alpha)
