"""Pessimistic policy selection on logs: an honest estimate of a policy's improvement over a trusted
default, and the choice among candidate policies by its lower confidence bound.

Why not the plain DR mean and its row-wise standard error: when a policy routes many prompts to an arm
that the logs hold a handful of times, the clipped DR value is dominated by the outcome model (which
shrinks a rare arm towards the others), and its standard error counts every logged row, not the few
that carry information about that arm. The estimate here corrects the outcome model per arm with a
self-normalised weighted mean of that arm's residuals (no clipping needed), and its variance divides
by the arm's effective sample size (Kish) plus a prior pseudo-count, so an arm with few, or no, logged
rows in the region where the policy switches to it counts as uncertain, never as confidently good.

Choosing by the lower bound of the improvement over a default policy (the direct method) is
high-confidence policy improvement (Thomas et al. 2015; SPIBB, Laroche et al. 2019): the default is
left only where the evidence supports it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checks import check_treatment, check_vector
from .crossfit import Nuisances
from .ope import Estimate, as_policy

#: Standard errors subtracted from an improvement's estimate before it may replace the default. Two: one
#: did better on issue 32's tune half of confounded loggers, but not on its report half, and it lost issue
#: 13's per-lambda guarantee on the paper protocol (RouterBench, cost-biased beta=3, seed 0: worst lambda
#: -0.248 against -0.086; ``benchmarks/results/loggers/pessimism_check.md``).
DEFAULT_PESSIMISM = 2.0

#: Prior pseudo-rows behind the outcome model's prediction for an arm (shrinks a thin arm's
#: residual mean towards zero and keeps its variance finite when no logged row supports it).
DEFAULT_PRIOR_ROWS = 1.0


@dataclass
class LoggedEvidence:
    """Logged rows and their (out-of-sample) nuisances: the evidence policies are judged on.

    Attributes
    ----------
    treatment : ndarray (m,) int in [0, K)
    quality, cost : ndarray (m,)
    nuisances : Nuisances   ``quality``, ``cost`` (m, K) and ``logged_propensity`` (m,) for these rows
    """

    treatment: np.ndarray
    quality: np.ndarray
    cost: np.ndarray
    nuisances: Nuisances

    def __post_init__(self):
        K = np.shape(self.nuisances.quality)[1]
        self.treatment = check_treatment(self.treatment, K)
        m = len(self.treatment)
        self.quality = check_vector("quality", self.quality, m)
        self.cost = check_vector("cost", self.cost, m)
        for name in ("quality", "cost"):
            if np.shape(getattr(self.nuisances, name)) != (m, K):
                raise ValueError(f"nuisances.{name} must have shape (m, K) = ({m}, {K}), "
                                 f"got {np.shape(getattr(self.nuisances, name))}")
        check_vector("nuisances.logged_propensity", self.nuisances.logged_propensity, m)

    @property
    def n_arms(self) -> int:
        return self.nuisances.quality.shape[1]

    def __len__(self) -> int:
        return len(self.treatment)

    def subset(self, idx) -> LoggedEvidence:
        """The rows ``idx`` (an index array)."""
        nu = self.nuisances
        sub = Nuisances(nu.propensity[idx], nu.logged_propensity[idx], nu.quality[idx], nu.cost[idx],
                        None if nu.folds is None else nu.folds[idx])
        return LoggedEvidence(self.treatment[idx], self.quality[idx], self.cost[idx], sub)


def improvement(policy, default, evidence: LoggedEvidence, lam: float, *,
                prior_rows: float = DEFAULT_PRIOR_ROWS) -> Estimate:
    """Estimate of ``V(policy) - V(default)`` at ``lam`` whose standard error reflects, per arm, how
    many logged rows support the switch.

    Write ``delta = pi - pi0`` (m, K) and split it into its positive and negative parts. For each arm t
    and part h (m,) >= 0, the outcome model's error on the rows h weights is estimated by the
    self-normalised mean of arm t's logged residuals ``r = y - mu_t(x)`` with weights ``h / e_t(x)``,
    shrunk towards zero by ``prior_rows`` pseudo-rows; its variance is ``s^2 / (ESS + prior_rows)``,
    ``ESS = (sum w)^2 / sum w^2`` (Kish), ``s^2`` the larger of arm t's weighted residual variance and
    all arms' pooled one. The estimate is the direct method's difference plus the corrections (each
    times the part's mass ``mean(h)``); the variance sums the direct method's sampling variance and the
    parts' (disjoint rows for deterministic policies, so independent).

    Parameters
    ----------
    policy, default : ndarray (m,) int actions or (m, K) probabilities
    evidence : LoggedEvidence (m rows)
    lam : float
    prior_rows : float > 0

    Returns
    -------
    Estimate   (estimator ``"pessimistic-dr"``, 95% normal interval, n = m)
    """
    if prior_rows <= 0:
        raise ValueError(f"prior_rows must be > 0, got {prior_rows}")
    K, m = evidence.n_arms, len(evidence)
    pi, pi0 = as_policy(policy, K), as_policy(default, K)
    if pi.shape != (m, K) or pi0.shape != (m, K):
        raise ValueError(f"policies must give (m, K) = ({m}, {K}) probabilities or (m,) actions, "
                         f"got {pi.shape} and {pi0.shape}")
    nu, t = evidence.nuisances, evidence.treatment
    mu = nu.quality - lam * nu.cost                       # (m, K)
    y = evidence.quality - lam * evidence.cost            # (m,)
    rows = np.arange(m)
    resid = y - mu[rows, t]                               # (m,) residual of the logged arm
    e = np.maximum(np.asarray(nu.logged_propensity, float), 1e-12)
    s2_all = float(np.var(resid)) if m > 1 else 1.0
    delta = pi - pi0
    dm = (delta * mu).sum(1)
    value = float(dm.mean())
    var = float(np.var(dm, ddof=1) / m) if m > 1 else 0.0
    for sign, part in ((1.0, np.clip(delta, 0, None)), (-1.0, np.clip(-delta, 0, None))):
        for k in range(K):
            mass = float(part[:, k].mean())
            if mass <= 0:
                continue
            logged = t == k
            w = part[logged, k] / e[logged]
            sw = float(w.sum())
            if sw > 0:
                r = resid[logged]
                ess = sw ** 2 / float(np.sum(w ** 2))
                mean_r = float(np.sum(w * r) / sw)
                s2 = max(float(np.sum(w * (r - mean_r) ** 2) / sw), s2_all)
            else:
                ess, mean_r, s2 = 0.0, 0.0, s2_all
            value += sign * mass * mean_r * ess / (ess + prior_rows)
            var += mass ** 2 * s2 / (ess + prior_rows)
    se = float(np.sqrt(var))
    return Estimate("pessimistic-dr", value, se, value - 1.96 * se, value + 1.96 * se, m)


def select_policy(candidates: dict, default: str | None, evidence: LoggedEvidence, lam: float, *,
                  pessimism: float = DEFAULT_PESSIMISM, prior_rows: float = DEFAULT_PRIOR_ROWS):
    """The candidate with the highest lower bound ``estimate - pessimism * se``.

    With a ``default``, the bound is that of the improvement over ``candidates[default]`` (whose own
    bound is 0): the default is kept unless another's bound is positive (high-confidence policy
    improvement). With ``default=None``, the bound is that of each candidate's own value (pessimistic
    selection; the policy whose value the logs support best wins).

    Parameters
    ----------
    candidates : dict name -> ndarray (m,) actions or (m, K) probabilities on the evidence's rows
    default : str or None   key of the trusted default policy
    evidence : LoggedEvidence
    lam : float
    pessimism : float   standard errors (a negative value favours departures)

    Returns
    -------
    name : the chosen key
    bounds : dict name -> (estimate, se) of the improvement over the default (or of the value)
    """
    if default is not None and default not in candidates:
        raise KeyError(f"default {default!r} is not among the candidates {sorted(candidates)}")
    if not candidates:
        raise ValueError("no candidate policies to select from")
    zero = np.zeros((len(evidence), evidence.n_arms))
    bounds, best, best_lb = {}, None, -np.inf
    if default is not None:
        bounds[default], best, best_lb = (0.0, 0.0), default, 0.0
    for name, pol in candidates.items():
        if name == default:
            continue
        est = improvement(pol, zero if default is None else candidates[default], evidence, lam,
                          prior_rows=prior_rows)
        bounds[name] = (est.value, est.se)
        lb = est.value - pessimism * est.se
        if lb > best_lb:
            best, best_lb = name, lb
    return best, bounds


__all__ = ["DEFAULT_PESSIMISM", "DEFAULT_PRIOR_ROWS", "LoggedEvidence", "improvement", "select_policy"]
