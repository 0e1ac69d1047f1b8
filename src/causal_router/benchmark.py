"""The paper's protocol on a full-feedback table: simulate logs, train routers, evaluate on test."""

from __future__ import annotations

import time

import numpy as np

from .causal.scores import Utilities
from .data.matrices import FullFeedback
from .data.simulate import simulate
from .evaluation.metrics import evaluate_routers
from .policy.data import RoutingData
from .policy.fit import build_routing_data, fit_routers
from .policy.routers import get_router


def _rows(ff: FullFeedback, prompt_ids) -> np.ndarray:
    """Positions in ``ff`` of the given prompt ids, shape (m,)."""
    pos = {p: i for i, p in enumerate(ff.prompt_ids)}
    return np.array([pos[p] for p in np.asarray(prompt_ids).astype(str)])


def full_feedback_skyline(ff, X, train_idx, val_idx, lambdas, params=None):
    """The RM-Softmax learner trained on every model's true outcome for every training prompt."""
    data = RoutingData(
        models=list(ff.models), X=X[train_idx], treatment=None, quality=None, cost=None, input_tokens=None,
        utilities=Utilities(ff.scores[train_idx], ff.costs[train_idx]), crossfitter=None,
        X_val=X[val_idx], val_utilities=Utilities(ff.scores[val_idx], ff.costs[val_idx]),
    )
    return get_router("rm-softmax", **(params or {})).fit(data, lambdas)


def run_protocol(ff: FullFeedback, X: np.ndarray, policy: str, *, strength=None, seed: int = 0, lambdas=(0,),
                 methods=None, params=None, skyline: bool = True, data_kwargs=None) -> list[dict]:
    """One simulated study: logs from ``policy``, routers trained, metrics on the test split.

    ff : full-feedback table; X : (n_prompts, d) features aligned with ``ff.prompt_ids``.
    Returns records with ``method, lambda, utility, regret, accuracy, cost, quality, train_seconds``.
    """
    kw = {"beta": strength} if policy == "cost-biased" else {"kappa": strength} if policy == "previous-router" else {}
    sim = simulate(ff, X, policy, seed=seed, **{k: v for k, v in kw.items() if v is not None})
    tr, va = _rows(ff, sim.train["prompt_id"]), _rows(ff, sim.val["prompt_id"])
    test = FullFeedback.from_frame(sim.test)
    te = _rows(ff, test.prompt_ids)
    start = time.perf_counter()
    data = build_routing_data(sim.train, X[tr], sim.val, X[va], list(ff.models), random_state=seed,
                              **(data_kwargs or {}))
    nuisance_seconds = time.perf_counter() - start
    routers, seconds = fit_routers(data, lambdas, methods, params)
    if skyline:
        start = time.perf_counter()
        routers["full-feedback"] = full_feedback_skyline(ff, X, tr, va, lambdas, (params or {}).get("rm-softmax"))
        seconds["full-feedback"] = time.perf_counter() - start
    tin = test.input_tokens
    records = evaluate_routers(routers, test, X[te], lambdas, tin)
    for r in records:
        r["train_seconds"] = seconds.get(r["method"], 0.0) + (nuisance_seconds if r["method"] in seconds else 0.0)
        r["strength"] = sim.info.get("strength")
    return records

