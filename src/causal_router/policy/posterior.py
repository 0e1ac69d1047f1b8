"""How sure a router is of each model's utility, and the probability that each model is the best.

Thompson-style exploration (:class:`~causal_router.policy.exploration.ExplorationPolicy`,
``strategy="thompson"``) sends traffic to a model in proportion to the probability that it is the
best for the prompt. The posterior used here is deliberately simple, so that it costs nothing to
serve: the mean is the router's direct-method utility ``q_t(x) - lam * c_t(x)``, and the spread of
model ``t`` is ``residual_sd / sqrt(n_t + 1)``, with ``n_t`` the model's logged training rows and
``residual_sd`` the quality model's residual standard deviation. A model logged a handful of times
is uncertain everywhere; that is what decides whether the loop ever learns it is better
(``benchmarks/results/exploration_sim/exploration_sim.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.special import log_ndtr

#: Gauss-Hermite nodes of :func:`prob_best` (exact for a smooth integrand; ample for exploration).
_NODES = 48


@dataclass(frozen=True)
class ArmPosterior:
    """Per-model uncertainty of a fitted outcome model.

    Attributes
    ----------
    counts : ndarray (K,)    logged training rows per model
    residual_sd : float      residual standard deviation of the quality model on its training rows
    """

    counts: np.ndarray
    residual_sd: float

    def sd(self) -> np.ndarray:
        """Posterior standard deviation of each model's utility, shape (K,)."""
        return float(self.residual_sd) / np.sqrt(np.asarray(self.counts, dtype=float) + 1.0)

    @classmethod
    def from_fit(cls, quality_model, X, treatment, quality, n_arms: int, input_tokens=None) -> ArmPosterior:
        """From a fitted quality model (``predict(X, input_tokens) -> (n, K)``) and its training
        rows: X (n, d), treatment (n,) int, quality (n,)."""
        t = np.asarray(treatment, dtype=int)
        pred = quality_model.predict(np.asarray(X), input_tokens)[np.arange(len(t)), t]
        resid = np.asarray(quality, dtype=float) - pred
        return cls(np.bincount(t, minlength=n_arms).astype(float), float(resid.std()) if len(resid) > 1 else 1.0)


def arm_posterior(data) -> ArmPosterior | None:
    """The :class:`ArmPosterior` of ``data`` (a :class:`~causal_router.policy.data.RoutingData`),
    or None without logged treatments (full-feedback data) or an outcome model."""
    cf = data.crossfitter
    if data.treatment is None or cf is None or getattr(cf, "quality_model_", None) is None:
        return None
    return ArmPosterior.from_fit(cf.quality_model_, data.X, data.treatment, data.quality, data.n_arms,
                                 data.input_tokens)


@lru_cache(maxsize=1)
def _hermgauss() -> tuple[np.ndarray, np.ndarray]:
    # computing the nodes costs more than the quadrature itself for a one-prompt request
    return np.polynomial.hermite.hermgauss(_NODES)


def prob_best(mean, sd) -> np.ndarray:
    """Probability that each model has the highest utility, for independent normal utilities.

    Parameters
    ----------
    mean : array of shape (n, K)
        Posterior means.
    sd : array of shape (K,) or (n, K)
        Posterior standard deviations (> 0).

    Returns
    -------
    ndarray of shape (n, K): rows sum to 1.

    ``P(t best) = E_u[prod_{j != t} Phi((u - mean_j) / sd_j)]``, ``u ~ N(mean_t, sd_t)``, by
    Gauss-Hermite quadrature (deterministic: the logged propensity is exactly the one drawn from).
    """
    mu = np.atleast_2d(np.asarray(mean, dtype=float))
    n, K = mu.shape
    s = np.broadcast_to(np.asarray(sd, dtype=float), (n, K))
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError("posterior standard deviations must be finite and > 0")
    x, w = _hermgauss()
    out = np.empty((n, K))
    for t in range(K):
        u = mu[:, t, None] + np.sqrt(2.0) * s[:, t, None] * x[None]          # (n, nodes)
        z = (u[:, :, None] - mu[:, None, :]) / s[:, None, :]                 # (n, nodes, K)
        logphi = log_ndtr(z)
        logphi[:, :, t] = 0.0
        out[:, t] = np.exp(logphi.sum(2)) @ w / np.sqrt(np.pi)
    out = np.clip(out, 0.0, None)
    total = out.sum(1, keepdims=True)
    return np.where(total > 0, out / np.where(total > 0, total, 1.0), 1.0 / K)
