"""Simulating observational logs from a full-feedback table (docs/architecture.md, Data contracts).

Protocol: split prompts 60/20/20 train/val/test stratified by ``dataset``; for train and val
draw one model per prompt from a logging policy and record its propensity; keep test as full
feedback, carrying the logging policy's probabilities in a ``propensity`` column.

Every random step draws from its own child of ``np.random.SeedSequence(seed)`` (fixed spawn
keys below), so one seed gives identical outputs and different seeds differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge
from sklearn.model_selection import train_test_split

from . import schema as S
from .matrices import FullFeedback

POLICIES = ("uniform", "cost-biased", "previous-router")

#: Mixing weight of the softmax part; the rest (0.05) is spread uniformly over models.
SOFTMAX_WEIGHT = 0.95
#: Share of the training prompts given to the previous router (then dropped from train).
SLICE_FRACTION = 0.10

# Spawn keys of the child seed sequences, one per random step.
_SPLIT, _PROJECTION, _PREF, _SLICE, _DRAW_TRAIN, _DRAW_VAL, _FALLBACK_SLICE, _DRAW_HOLDOUT = range(8)


def _child(seed: int, key: int) -> np.random.SeedSequence:
    """Child ``key`` of ``SeedSequence(seed)`` (equal to ``SeedSequence(seed).spawn(..)[key]``)."""
    return np.random.SeedSequence(seed, spawn_key=(key,))


def _rng(seed: int, key: int) -> np.random.Generator:
    return np.random.default_rng(_child(seed, key))


@dataclass
class Simulation:
    """A simulated benchmark.

    Attributes
    ----------
    train, val : DataFrame
        Observational logs, one row per prompt (unique ``prompt_id``): ``prompt_id, prompt,
        model, score, cost, propensity`` and, when present in the table, ``dataset,
        input_tokens, output_tokens`` (the logged model's output tokens).
    test : DataFrame
        Full feedback, long: one row per (prompt_id, model), with ``propensity`` = the logging
        policy's probability of that model for that prompt (sums to 1 per prompt).
    info : dict
        ``policy, strength, seed, lam_log, n_train, n_val, n_test, n_dropped_slice,
        mean_max_propensity, models``.
    """

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    info: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- validation
def _check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ValueError(f"unknown logging policy {policy!r}; valid policies: {', '.join(POLICIES)}")


def _check_X(ff: FullFeedback, X: np.ndarray | None, policy: str) -> np.ndarray | None:
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


def _check_strengths(beta: float, kappa: float | None, lam_log: float) -> None:
    if not np.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a finite number >= 0; got {beta}")
    if kappa is not None and (not np.isfinite(kappa) or kappa < 0):
        raise ValueError(f"kappa must be a finite number >= 0 or None; got {kappa}")
    if not np.isfinite(lam_log):
        raise ValueError(f"lam_log must be finite; got {lam_log}")


# --------------------------------------------------------------------------- split
def split_prompts(
    ff: FullFeedback, seed: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split prompts into train/val/test, stratified by ``ff.datasets`` when present.

    Two calls of ``sklearn.model_selection.train_test_split`` (train vs rest, then val vs test).
    If a dataset is too small to stratify, the split falls back to an unstratified one.

    Parameters
    ----------
    ff : FullFeedback
        Table with ``n_prompts`` prompts.
    seed : int
        Seed of the split.
    fractions : tuple of 3 floats
        Positive train/val/test shares summing to 1.

    Returns
    -------
    train_idx, val_idx, test_idx : ndarray of int
        Sorted, disjoint prompt indices covering ``range(n_prompts)``.
    """
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or np.any(f <= 0) or not np.isclose(f.sum(), 1.0):
        raise ValueError(f"fractions must be 3 positive shares summing to 1; got {fractions}")
    n = ff.n_prompts
    if n < 3:
        raise ValueError(f"need at least 3 prompts to split; got {n}")
    idx = np.arange(n)
    strata = None if ff.datasets is None else np.asarray(ff.datasets).astype(str)
    rs1, rs2 = (int(v) for v in _child(seed, _SPLIT).generate_state(2))

    def _split(a, strat, test_size, rs):
        try:
            return train_test_split(a, test_size=test_size, random_state=rs, stratify=strat)
        except ValueError:
            if strat is None:
                raise
            return train_test_split(a, test_size=test_size, random_state=rs, stratify=None)

    train, rest = _split(idx, strata, float(f[1] + f[2]), rs1)
    strat_rest = None if strata is None else strata[rest]
    val, test = _split(rest, strat_rest, float(f[2] / (f[1] + f[2])), rs2)
    return np.sort(train), np.sort(val), np.sort(test)


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

    W = _rng(seed, _PROJECTION).standard_normal((X.shape[1], K))
    sd = (X @ W).std(axis=0)
    W = W / np.where(sd > 0, sd, 1.0)
    proj = X @ W  # (n, K), columns of unit std over prompts

    if ff.datasets is None:
        codes = np.zeros(n, dtype=int)
        n_ds = 1
    else:
        names, codes = np.unique(np.asarray(ff.datasets).astype(str), return_inverse=True)
        n_ds = len(names)
    pref = _rng(seed, _PREF).standard_normal((n_ds, K))
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
    _check_policy(policy)
    _check_strengths(beta, kappa, lam_log)
    X = _check_X(ff, X, policy)
    n, K = ff.n_prompts, ff.n_models
    if policy == "uniform":
        return np.full((n, K), 1.0 / K), {"strength": None}
    if policy == "cost-biased":
        return _mix(beta * _cost_biased_logits(ff, X, seed)), {"strength": float(beta)}

    # previous-router
    if fit_idx is None:
        m = max(2, int(round(SLICE_FRACTION * n)))
        fit_idx = np.sort(_rng(seed, _FALLBACK_SLICE).choice(n, size=min(m, n), replace=False))
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


# --------------------------------------------------------------------------- simulation
def _draw(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One model index per row, drawn from the rows of ``probs`` (n, K) -> (n,)."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cdf[:, -1]
    return np.minimum((cdf < u[:, None]).sum(axis=1), probs.shape[1] - 1)


def log_frame(ff: FullFeedback, idx: np.ndarray, chosen: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    """Log rows of model ``chosen[i]`` answering prompt ``idx[i]`` (m,), as the logging policy ``probs``
    (n_prompts, K) drew it: the table's outcome, the propensity of the chosen model and the
    probability vector, plus the dataset and token columns the table has."""
    rows = np.arange(len(idx))
    cols = {
        S.PROMPT_ID: ff.prompt_ids[idx].astype(str),
        S.PROMPT: ff.prompts[idx].astype(str),
        S.MODEL: ff.models[chosen].astype(str),
        S.SCORE: ff.scores[idx, chosen].astype(float),
        S.COST: ff.costs[idx, chosen].astype(float),
        S.PROPENSITY: probs[idx][rows, chosen].astype(float),
        S.PROPENSITIES: [S.propensities_json(ff.models, p) for p in probs[idx]],
    }
    if ff.datasets is not None:
        cols[S.DATASET] = np.asarray(ff.datasets)[idx].astype(str)
    if ff.input_tokens is not None:
        cols[S.INPUT_TOKENS] = np.asarray(ff.input_tokens, dtype=float)[idx]
    if ff.output_tokens is not None:
        cols[S.OUTPUT_TOKENS] = np.asarray(ff.output_tokens, dtype=float)[idx, chosen]
    return pd.DataFrame(cols)


def _test_frame(ff: FullFeedback, idx: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    K = ff.n_models
    cols = {
        S.PROMPT_ID: np.repeat(ff.prompt_ids[idx].astype(str), K),
        S.PROMPT: np.repeat(ff.prompts[idx].astype(str), K),
        S.MODEL: np.tile(ff.models.astype(str), len(idx)),
        S.SCORE: ff.scores[idx].astype(float).ravel(),
        S.COST: ff.costs[idx].astype(float).ravel(),
        S.PROPENSITY: probs[idx].astype(float).ravel(),
    }
    if ff.datasets is not None:
        cols[S.DATASET] = np.repeat(np.asarray(ff.datasets)[idx].astype(str), K)
    if ff.input_tokens is not None:
        cols[S.INPUT_TOKENS] = np.repeat(np.asarray(ff.input_tokens, dtype=float)[idx], K)
    if ff.output_tokens is not None:
        cols[S.OUTPUT_TOKENS] = np.asarray(ff.output_tokens, dtype=float)[idx].ravel()
    return pd.DataFrame(cols)


def draw_logs(table: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Observational logs (one row per prompt) drawn from a full-feedback table that carries the
    logging policy's probabilities in ``propensity`` (e.g. a simulated test split): fresh logs
    for a promotion gate that no router has seen."""
    ff = FullFeedback.from_frame(table)
    if ff.propensities is None:
        raise ValueError("draw_logs needs the table's 'propensity' column (the logging probabilities)")
    chosen = _draw(ff.propensities, _rng(seed, _DRAW_HOLDOUT))
    return log_frame(ff, np.arange(ff.n_prompts), chosen, ff.propensities)


def default_lam_log(ff: FullFeedback) -> float:
    """A middle cost preference, free of the table's price scale: ``lam * (dearest model's mean cost) = 0.5``.

    (100 on RouterBench, about 7,400 on LLMRouter: the middle of the benchmark grids.)
    """
    return float(0.5 / max(ff.costs.mean(axis=0).max(), 1e-300))


def simulate(
    ff: FullFeedback,
    X: np.ndarray | None,
    policy: str,
    *,
    beta: float = 3.0,
    kappa: float | None = None,
    lam_log: float | None = None,
    seed: int = 0,
) -> Simulation:
    """Simulate train/val logs and a full-feedback test split from a full-feedback table.

    Parameters
    ----------
    ff : FullFeedback
        Table with ``n`` prompts and ``K`` models.
    X : ndarray, shape (n, d), or None
        Prompt features, rows aligned with ``ff.prompt_ids`` (None only for ``uniform``).
    policy : {"uniform", "cost-biased", "previous-router"}
        Logging policy (docs/architecture.md, Data contracts).
    beta : float, >= 0
        Strength of ``cost-biased``.
    kappa : float or None
        Inverse temperature of ``previous-router``; None sets it so that the mean largest
        probability over the train+val prompts is 0.75.
    lam_log : float or None
        Cost weight of the previous router's utility; None means :func:`default_lam_log`.
    seed : int
        Seed of every random step (split, slice, projection, preferences, draws).

    Returns
    -------
    Simulation
        ``train``/``val`` logs (one row per prompt), long ``test`` with the logging
        probabilities in ``propensity``, and ``info``. For ``previous-router`` a seeded 10%
        slice of the training prompts fits the logger and is dropped from ``train``.
    """
    _check_policy(policy)
    lam_log = default_lam_log(ff) if lam_log is None else lam_log
    _check_strengths(beta, kappa, lam_log)
    X = _check_X(ff, X, policy)

    train, val, test = split_prompts(ff, seed)
    dropped = np.array([], dtype=int)
    if policy == "previous-router":
        m = max(2, int(round(SLICE_FRACTION * len(train))))
        dropped = np.sort(_rng(seed, _SLICE).choice(train, size=min(m, len(train)), replace=False))
        train = np.setdiff1d(train, dropped)

    probs, pinfo = logging_probabilities(
        ff, X, policy, beta=beta, kappa=kappa, lam_log=lam_log, seed=seed,
        fit_idx=dropped if policy == "previous-router" else None,
        target_idx=np.concatenate([train, val]),
    )
    train_log = log_frame(ff, train, _draw(probs[train], _rng(seed, _DRAW_TRAIN)), probs)
    val_log = log_frame(ff, val, _draw(probs[val], _rng(seed, _DRAW_VAL)), probs)
    test_df = _test_frame(ff, test, probs)

    logged = np.concatenate([train, val])
    info = {
        "policy": policy,
        "strength": pinfo["strength"],
        "seed": seed,
        "lam_log": float(lam_log),
        "n_train": int(len(train)),
        "n_val": int(len(val)),
        "n_test": int(len(test)),
        "n_dropped_slice": int(len(dropped)),
        "mean_max_propensity": float(probs[logged].max(axis=1).mean()) if len(logged) else float("nan"),
        "models": [str(m) for m in ff.models],
    }
    return Simulation(train=train_log, val=val_log, test=test_df, info=info)
