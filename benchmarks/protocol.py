"""The paper's protocol on a full-feedback table: simulate logs, train routers, evaluate on test."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from causal_router.data.matrices import FullFeedback
from causal_router.data.simulate import simulate
from causal_router.evaluation.metrics import evaluate_routers
from causal_router.features.hardware import torch_threads
from causal_router.policy.catalog import get_router
from causal_router.policy.data import build_routing_data, full_feedback_data
from causal_router.policy.training import fit_routers

log = logging.getLogger(__name__)

RECORD_COLUMNS = ("dataset", "policy", "strength", "seed", "method", "lambda", "utility", "regret", "accuracy",
                  "cost", "train_seconds")


def positions(ff: FullFeedback, prompt_ids) -> np.ndarray:
    """Positions in ``ff`` of the given prompt ids, shape (m,)."""
    pos = {p: i for i, p in enumerate(ff.prompt_ids)}
    return np.array([pos[p] for p in np.asarray(prompt_ids).astype(str)])


def full_feedback_skyline(ff, X, train_idx, val_idx, lambdas, params=None):
    """The RM-Softmax learner trained on every model's true outcome for every training prompt: a bare
    network, without the direct-method start of the loop's skyline
    (:func:`benchmarks.loop_arms.full_feedback_router`), so the study's reference row keeps its meaning."""
    with torch_threads(1):
        return get_router("rm-softmax", **(params or {})).fit(full_feedback_data(ff, X, train_idx, val_idx), lambdas)


def parse_policies(text: str) -> list[tuple[str, float | None]]:
    """``"uniform,cost-biased:1,cost-biased:3,previous-router"`` -> [(policy, strength or None)]."""
    out = []
    for item in (x.strip() for x in text.split(",") if x.strip()):
        name, _, strength = item.partition(":")
        out.append((name, float(strength) if strength else None))
    return out


def simulated_split(ff: FullFeedback, X_world: np.ndarray, policy: str, strength=None, seed: int = 0):
    """Logs simulated from ``policy`` (strength: cost-biased's beta, previous-router's kappa, or None for
    the default) on features ``X_world`` (n_prompts, d), and where its splits lie in ``ff``.

    Returns ``(sim, tr, va, test, te)``: the simulation, the train and val prompts' positions in ``ff``
    (n_train,), (n_val,), the test split as a FullFeedback and its positions (n_test,).
    """
    kw = {"beta": strength} if policy == "cost-biased" else {"kappa": strength} if policy == "previous-router" else {}
    sim = simulate(ff, X_world, policy, seed=seed, **{k: v for k, v in kw.items() if v is not None})
    tr, va = positions(ff, sim.train["prompt_id"]), positions(ff, sim.val["prompt_id"])
    test = FullFeedback.from_frame(sim.test)
    return sim, tr, va, test, positions(ff, test.prompt_ids)


def run_protocol(ff: FullFeedback, X: np.ndarray, policy: str, *, strength=None, seed: int = 0, lambdas=(0,),
                 methods=None, params=None, skyline: bool = True, peers: bool = False, data_kwargs=None,
                 dataset: str = "", X_world: np.ndarray | None = None) -> list[dict]:
    """One simulated study: logs from ``policy``, routers trained, metrics on the test split.

    ff : full-feedback table; X : (n_prompts, d) features aligned with ``ff.prompt_ids``, what the
    routers learn from. X_world : (n_prompts, d') or None (X): the features the simulated logging
    policy reads (its random projection, its previous router). Giving the same ``X_world`` to two runs
    that differ in ``X`` (e.g. fp32 and bf16 embeddings) gives them the same logs, so their results
    differ only by what the methods make of their features.
    Returns records with the keys of :data:`RECORD_COLUMNS` plus ``quality``.
    """
    sim, tr, va, test, te = simulated_split(ff, X if X_world is None else X_world, policy, strength, seed)
    start = time.perf_counter()
    data = build_routing_data(sim.train, X[tr], sim.val, X[va], list(ff.models), random_state=seed,
                              **(data_kwargs or {}))
    nuisance_seconds = time.perf_counter() - start
    routers, seconds = fit_routers(data, lambdas, methods, params)
    seconds = {k: v + nuisance_seconds for k, v in seconds.items()}
    if skyline:
        start = time.perf_counter()
        routers["full-feedback"] = full_feedback_skyline(ff, X, tr, va, lambdas, (params or {}).get("rm-softmax"))
        seconds["full-feedback"] = time.perf_counter() - start
    if peers:
        from .peers import EconMLDRPolicyForestRouter

        start = time.perf_counter()
        routers["econml-drpolicyforest"] = EconMLDRPolicyForestRouter(random_state=seed).fit(data, lambdas)
        seconds["econml-drpolicyforest"] = time.perf_counter() - start
    records = evaluate_routers(routers, test, X[te], lambdas, test.input_tokens)
    for r in records:
        r.update(dataset=dataset, policy=policy, strength=sim.info.get("strength"), seed=seed,
                 train_seconds=seconds.get(r["method"], 0.0))
    return records


def run_study(ff: FullFeedback, X: np.ndarray, policies, seeds, lambdas, out_dir, dataset: str, methods=None,
              peers: bool = True, params=None, data_kwargs=None, meta: dict | None = None,
              X_world: np.ndarray | None = None) -> pd.DataFrame:
    """Every (policy, seed) of a study; records appended to ``out_dir/records.csv`` as they finish.
    ``X_world``: the features the simulated logging policies read (default ``X``; see :func:`run_protocol`).

    ``meta`` ({column: value}, e.g. ``embedding_precision`` and ``cpu_model``) is added as
    constant columns, so that a results file says how its features were made.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames = []
    for policy, strength in policies:
        for seed in seeds:
            start = time.perf_counter()
            recs = run_protocol(ff, X, policy, strength=strength, seed=seed, lambdas=lambdas, methods=methods,
                                peers=peers, params=params, data_kwargs=data_kwargs, dataset=dataset,
                                X_world=X_world)
            df = pd.DataFrame(recs)[list(RECORD_COLUMNS) + ["quality"]]
            df["requested_strength"] = strength
            for column, value in (meta or {}).items():
                df[column] = value
            frames.append(df)
            pd.concat(frames).to_csv(out / "records.csv", index=False)
            log.info("%s %s:%s seed %d: %.0fs", dataset, policy, strength, seed, time.perf_counter() - start)
    return pd.concat(frames, ignore_index=True)


def summarize(records: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of utility per (dataset, policy, requested strength, method, lambda)."""
    keys = ["dataset", "policy", "requested_strength", "method", "lambda"]
    df = records.copy()
    df["requested_strength"] = df["requested_strength"].fillna(-1)
    g = df.groupby(keys)["utility"]
    out = g.agg(["mean", "std", "count"]).reset_index()
    out["requested_strength"] = out["requested_strength"].replace(-1, np.nan)
    return out
