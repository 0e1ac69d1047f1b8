"""Counterfactual pseudo-outcomes (DM, IPW, DR) and the clipping report."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .checks import check_treatment, check_vector

ESTIMATORS = ("dm", "ipw", "dr")

#: The clip defaults, both here. The estimators themselves default to no floor (unbiased, as written
#: in the literature); training, evaluation and the promotion gate default to DEFAULT_CLIP
#: (params.yaml: crossfit.clip; benchmarks/results/ablations/ablations.csv compares floors).
NO_CLIP = 0.0
DEFAULT_CLIP = 0.1


def _weights(treatment, logged_propensity, clip):
    return 1.0 / np.maximum(logged_propensity, clip)


def pseudo_outcomes(treatment, outcome, mu, logged_propensity, estimator: str = "dr", clip: float = NO_CLIP):
    """Counterfactual pseudo-outcomes for one outcome (quality or cost).

    Parameters
    ----------
    treatment : ndarray (n,) int
        Logged model per row.
    outcome : ndarray (n,)
        Observed outcome of the logged model.
    mu : ndarray (n, K)
        Outcome model predictions (cross-fitted).
    logged_propensity : ndarray (n,)
        ``e_{t_i}(x_i)``.
    estimator : {"dm", "ipw", "dr"}
    clip : float
        Propensities below ``clip`` are raised to it.

    Returns
    -------
    ndarray (n, K)
        ``G_i(t)``; DR: ``mu_t + 1[t_i = t] (y_i - mu_t) / max(e, clip)``.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {ESTIMATORS}")
    mu = np.asarray(mu, dtype=float)
    if mu.ndim != 2:
        raise ValueError(f"`mu` must be 2D array of shape (n, K), but is {mu.ndim}D")
    n, K = mu.shape
    treatment = check_treatment(treatment, K)
    if len(treatment) != n:
        raise ValueError(f"Expected `mu.shape[0] == treatment.shape[0]`, but found it False ({n} != {len(treatment)})")
    outcome = check_vector("outcome", outcome, n)
    rows = np.arange(n)
    if estimator == "dm":
        return mu.copy()
    w = _weights(treatment, check_vector("logged_propensity", logged_propensity, n), clip)
    G = mu.copy() if estimator == "dr" else np.zeros((n, K))
    base = mu[rows, treatment] if estimator == "dr" else 0.0
    G[rows, treatment] += (outcome - base) * w
    return G


@dataclass
class ClipReport:
    """What propensity clipping did, per model.

    Attributes
    ----------
    clip : float
    n_logged : ndarray (K,)   rows logged per model
    fraction_clipped : ndarray (K,)   share of a model's logged rows with ``e < clip``
    min_propensity : ndarray (K,)   smallest ``e_{t_i}(x_i)`` among a model's logged rows
    ess : ndarray (K,)   effective sample size ``(sum w)^2 / sum w^2`` of the (clipped) weights
    """

    clip: float
    n_logged: np.ndarray
    fraction_clipped: np.ndarray
    min_propensity: np.ndarray
    ess: np.ndarray
    models: list = field(default_factory=list)

    def to_records(self) -> list[dict]:
        names = self.models or [str(k) for k in range(len(self.n_logged))]
        return [
            {
                "model": names[k],
                "n_logged": int(self.n_logged[k]),
                "fraction_clipped": float(self.fraction_clipped[k]),
                "min_propensity": float(self.min_propensity[k]),
                "ess": float(self.ess[k]),
                "clip": float(self.clip),
            }
            for k in range(len(self.n_logged))
        ]

    def summary(self) -> str:
        lines = [f"propensity clipping at {self.clip:g}:"]
        for r in self.to_records():
            lines.append(
                f"  {r['model']}: n={r['n_logged']} clipped={r['fraction_clipped']:.1%} "
                f"min_e={r['min_propensity']:.4f} ess={r['ess']:.1f}"
            )
        return "\n".join(lines)


def clip_report(treatment, logged_propensity, n_arms: int, clip: float, models=None) -> ClipReport:
    """Clipping diagnostics; treatment (n,) int in [0, n_arms), logged_propensity (n,)."""
    treatment = check_treatment(treatment, n_arms)
    logged_propensity = check_vector("logged_propensity", logged_propensity, len(treatment))
    n_logged = np.bincount(treatment, minlength=n_arms)
    frac = np.zeros(n_arms)
    emin = np.full(n_arms, np.nan)
    ess = np.zeros(n_arms)
    w = _weights(treatment, logged_propensity, clip)
    for k in range(n_arms):
        m = treatment == k
        if m.any():
            frac[k] = np.mean(logged_propensity[m] < clip)
            emin[k] = logged_propensity[m].min()
            ess[k] = w[m].sum() ** 2 / np.sum(w[m] ** 2)
    return ClipReport(clip, n_logged, frac, emin, ess, list(models) if models is not None else [])


@dataclass
class Utilities:
    """Pseudo-outcomes for quality and cost; utility at any lambda is ``Gq - lam * Gc``.

    Attributes
    ----------
    quality : ndarray (n, K)
    cost : ndarray (n, K)
    """

    quality: np.ndarray
    cost: np.ndarray

    def at(self, lam: float) -> np.ndarray:
        """Utility pseudo-outcomes at ``lam``, shape (n, K)."""
        return self.quality - lam * self.cost


def utilities(treatment, quality, cost, nuisances, estimator="dr", clip=NO_CLIP, cost_estimator=None) -> Utilities:
    """Quality and cost pseudo-outcomes from logged rows and nuisances (see :func:`pseudo_outcomes`).

    ``cost_estimator`` defaults to ``estimator``; "dm" for cost trusts a computed cost model and
    avoids multiplying 1/propensity noise by lambda.
    """
    t = np.asarray(treatment, dtype=int)
    e = nuisances.logged_propensity
    Gq = pseudo_outcomes(t, quality, nuisances.quality, e, estimator, clip)
    Gc = pseudo_outcomes(t, cost, nuisances.cost, e, cost_estimator or estimator, clip)
    return Utilities(Gq, Gc)
