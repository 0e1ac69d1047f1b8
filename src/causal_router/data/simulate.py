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
from sklearn.model_selection import train_test_split

from . import schema as S
from .logging_policies import (
    DRAW_HOLDOUT_KEY,
    DRAW_TRAIN_KEY,
    DRAW_VAL_KEY,
    SLICE_FRACTION,
    SLICE_KEY,
    SPLIT_KEY,
    check_policy,
    check_strengths,
    check_X,
    child,
    logging_probabilities,
    rng,
)
from .matrices import FullFeedback


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
    rs1, rs2 = (int(v) for v in child(seed, SPLIT_KEY).generate_state(2))

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
    chosen = _draw(ff.propensities, rng(seed, DRAW_HOLDOUT_KEY))
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
    check_policy(policy)
    lam_log = default_lam_log(ff) if lam_log is None else lam_log
    check_strengths(beta, kappa, lam_log)
    X = check_X(ff, X, policy)

    train, val, test = split_prompts(ff, seed)
    dropped = np.array([], dtype=int)
    if policy == "previous-router":
        m = max(2, int(round(SLICE_FRACTION * len(train))))
        dropped = np.sort(rng(seed, SLICE_KEY).choice(train, size=min(m, len(train)), replace=False))
        train = np.setdiff1d(train, dropped)

    probs, pinfo = logging_probabilities(
        ff, X, policy, beta=beta, kappa=kappa, lam_log=lam_log, seed=seed,
        fit_idx=dropped if policy == "previous-router" else None,
        target_idx=np.concatenate([train, val]),
    )
    train_log = log_frame(ff, train, _draw(probs[train], rng(seed, DRAW_TRAIN_KEY)), probs)
    val_log = log_frame(ff, val, _draw(probs[val], rng(seed, DRAW_VAL_KEY)), probs)
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
