"""Logging policies of the simulation protocol (uniform, cost-biased, previous-router): each prompt's
probabilities over the models, and the checks of their arguments. Every random step draws from its own
child of ``np.random.SeedSequence(seed)`` (fixed spawn keys), so one seed gives identical outputs."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import Ridge

from .matrices import FullFeedback

POLICIES = ("uniform", "cost-biased", "previous-router")

#: Mixing weight of the softmax part; the rest (0.05) is spread uniformly over models.
SOFTMAX_WEIGHT = 0.95
#: Share of the training prompts given to the previous router (then dropped from train).
SLICE_FRACTION = 0.10

# Spawn keys of the child seed sequences, one per random step.
(SPLIT_KEY, PROJECTION_KEY, PREF_KEY, SLICE_KEY, DRAW_TRAIN_KEY, DRAW_VAL_KEY, FALLBACK_SLICE_KEY,
 DRAW_HOLDOUT_KEY) = range(8)


def child(seed: int, key: int) -> np.random.SeedSequence:
    """Child ``key`` of ``SeedSequence(seed)`` (equal to ``SeedSequence(seed).spawn(..)[key]``)."""
    return np.random.SeedSequence(seed, spawn_key=(key,))


def rng(seed: int, key: int) -> np.random.Generator:
    return np.random.default_rng(child(seed, key))


# --------------------------------------------------------------------------- validation
def check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ValueError(f"unknown logging policy {policy!r}; valid policies: {', '.join(POLICIES)}")


def check_X(ff: FullFeedback, X: np.ndarray | None, policy: str) -> np.ndarray | None:
    if X is None:
        if policy == "uniform":
            return None
        raise ValueError(f"policy {policy!r} needs prompt features X, shape (n_prompts, d); got None")
    X = np.asarray(X, dtype=float)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, shape (n_prompts, d); got shape {X.shape}")
    if X.shape[0] != ff.n_prompts:
        raise ValueError(f"X has {X.shape[0]} rows but the table has {ff.n_prompts} prompts")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains non-finite values")
    return X


def check_strengths(beta: float, kappa: float | None, lam_log: float) -> None:
    if not np.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a finite number >= 0; got {beta}")
    if kappa is not None and (not np.isfinite(kappa) or kappa < 0):
        raise ValueError(f"kappa must be a finite number >= 0 or None; got {kappa}")
    if not np.isfinite(lam_log):
        raise ValueError(f"lam_log must be finite; got {lam_log}")


# --------------------------------------------------------------------------- policies
def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _mix(logits: np.ndarray) -> np.ndarray:
    K = logits.shape[1]
    return SOFTMAX_WEIGHT * _softmax(logits) + (1.0 - SOFTMAX_WEIGHT) / K


def _cost_biased_logits(ff: FullFeedback, X: np.ndarray, seed: int) -> np.ndarray:
    """Logits at beta = 1, shape (n_prompts, n_models)."""
    n, K = ff.n_prompts, ff.n_models
    mean_cost = np.nanmean(np.asarray(ff.costs, dtype=float), axis=0)
    floor = max(1e-12, 1e-9 * float(np.nanmax(np.abs(mean_cost)))) if np.any(np.isfinite(mean_cost)) else 1e-12
    mean_cost = np.maximum(np.nan_to_num(mean_cost, nan=floor), floor)
    cost_term = -np.log(mean_cost / mean_cost.min())  # (K,)

    W = rng(seed, PROJECTION_KEY).standard_normal((X.shape[1], K))
    sd = (X @ W).std(axis=0)
    W = W / np.where(sd > 0, sd, 1.0)
    proj = X @ W  # (n, K), columns of unit std over prompts

    if ff.datasets is None:
        codes = np.zeros(n, dtype=int)
        n_ds = 1
    else:
        names, codes = np.unique(np.asarray(ff.datasets).astype(str), return_inverse=True)
        n_ds = len(names)
    pref = rng(seed, PREF_KEY).standard_normal((n_ds, K))
    return cost_term[None, :] + proj + pref[codes]


def _previous_router_utility(
    ff: FullFeedback, X: np.ndarray, fit_idx: np.ndarray, lam_log: float
) -> np.ndarray:
    """Predicted utility ``q_t(x) - lam_log * c_t(x)`` of the previous router, shape (n, K)."""
    q = Ridge(alpha=1.0).fit(X[fit_idx], ff.scores[fit_idx]).predict(X)
    q = np.clip(q.reshape(len(X), -1), 0.0, 1.0)
    Xc = X if ff.input_tokens is None else np.column_stack([X, np.asarray(ff.input_tokens, float)])
    c = Ridge(alpha=1.0).fit(Xc[fit_idx], ff.costs[fit_idx]).predict(Xc)
    c = np.clip(c.reshape(len(X), -1), 0.0, None)  # a cost is never negative
    return q - lam_log * c


def _mean_max(u: np.ndarray, kappa: float) -> float:
    return float(_mix(kappa * u).max(axis=1).mean())


def _calibrate_kappa(u: np.ndarray, target: float) -> float:
    """Kappa whose mean largest probability over the rows of ``u`` is ``target`` (or closest).

    The mean largest probability is nondecreasing in kappa, from 1/K at 0 to
    ``0.95 / n_ties + 0.05 / K`` as kappa grows; bisection on log kappa.
    """
    lo, hi = 1e-8, 1.0
    if _mean_max(u, lo) >= target:
        return 0.0 if _mean_max(u, 0.0) >= target else lo
    while _mean_max(u, hi) < target and hi < 1e12:
        lo, hi = hi, hi * 10.0
    if _mean_max(u, hi) < target:  # unreachable (ties): the largest kappa is the closest
        return hi
    llo, lhi = np.log(lo), np.log(hi)
    for _ in range(200):
        mid = 0.5 * (llo + lhi)
        m = _mean_max(u, float(np.exp(mid)))
        if abs(m - target) < 1e-4:
            return float(np.exp(mid))
        if m < target:
            llo = mid
        else:
            lhi = mid
    return float(np.exp(0.5 * (llo + lhi)))


def logging_probabilities(
    ff: FullFeedback,
    X: np.ndarray | None,
    policy: str,
    *,
    beta: float = 3.0,
    kappa: float | None = None,
    lam_log: float = 0.0,
    seed: int = 0,
    fit_idx: np.ndarray | None = None,
    target_max_prob: float = 0.75,
    target_idx: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """Logging policy's probabilities for every prompt of the table.

    Parameters
    ----------
    ff : FullFeedback
        Table with ``n`` prompts and ``K`` models.
    X : ndarray, shape (n, d), or None
        Prompt features (required by ``cost-biased`` and ``previous-router``).
    policy : {"uniform", "cost-biased", "previous-router"}
    beta : float, >= 0
        Strength of ``cost-biased`` (0 gives uniform).
    kappa : float or None
        Inverse temperature of ``previous-router``; None calibrates it so that the mean over
        ``target_idx`` of the largest probability is ``target_max_prob``.
    lam_log : float
        Cost weight of the previous router's utility ``q - lam_log * c``.
    seed : int
        Seed of the projection and preferences (``cost-biased``) and of the fallback slice.
    fit_idx : ndarray of int, shape (m,), or None
        Prompts (with full feedback) the previous router is fitted on; None draws a seeded 10%
        of all prompts.
    target_max_prob : float
        Target mean largest probability for calibrating kappa.
    target_idx : ndarray of int or None
        Prompts over which the mean largest probability is calibrated; None means all prompts
        not in ``fit_idx``.

    Returns
    -------
    probs : ndarray, shape (n, K)
        Rows sum to 1; every entry >= 0.05 / K (``uniform``: exactly 1 / K).
    info : dict
        ``strength`` (beta, kappa used, or None for uniform) and, for previous-router,
        ``fit_idx``.
    """
    check_policy(policy)
    check_strengths(beta, kappa, lam_log)
    X = check_X(ff, X, policy)
    n, K = ff.n_prompts, ff.n_models
    if policy == "uniform":
        return np.full((n, K), 1.0 / K), {"strength": None}
    if policy == "cost-biased":
        return _mix(beta * _cost_biased_logits(ff, X, seed)), {"strength": float(beta)}

    # previous-router
    if fit_idx is None:
        m = max(2, int(round(SLICE_FRACTION * n)))
        fit_idx = np.sort(rng(seed, FALLBACK_SLICE_KEY).choice(n, size=min(m, n), replace=False))
    fit_idx = np.asarray(fit_idx, dtype=int)
    if len(fit_idx) == 0:
        raise ValueError("previous-router needs a non-empty fit_idx")
    u = _previous_router_utility(ff, X, fit_idx, lam_log)
    if kappa is None:
        if target_idx is None:
            target_idx = np.setdiff1d(np.arange(n), fit_idx)
        target_idx = np.asarray(target_idx, dtype=int)
        if len(target_idx) == 0:
            target_idx = np.arange(n)
        kappa = _calibrate_kappa(u[target_idx], float(target_max_prob))
    return _mix(kappa * u), {"strength": float(kappa), "fit_idx": fit_idx}
