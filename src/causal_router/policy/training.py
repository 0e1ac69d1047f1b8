"""The one training path: validated logs and their embeddings -> routing data -> fitted routers ->
a saved :class:`RouterSet`.

``causal-router train`` runs :func:`train_from_logs` in one go; the pipeline (``dvc repro`` and the
Prefect flow) runs its two halves as stages, :func:`fit_routing_data` (crossfit) then
:func:`train_routerset` (train), the flow passing the endpoint routers it fitted per lambda in
parallel. Every router set is built by :func:`train_routerset`: one rule for the model order
(:func:`served_models`), one ``meta``.
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..causal.nuisances import NuisanceConfig
from ..data import schema as S

# one thread per router fit: the networks are small, and on a shared 2-core machine two threads
# contend badly (seen: 0.6 s vs 27 s for one fit)
from ..features.hardware import one_blas_thread, torch_threads
from .catalog import ROUTERS, get_router
from .data import RoutingData, build_routing_data, scored_rows
from .routerset import RouterSet

#: Routers trained when none are named.
DEFAULT_METHODS = ("random", "cheapest", "best-single", "naive", "dr-regress", "rm-classification",
                   "rm-softmax", "rm-interval")

#: Routers trained one network per lambda: the flows fan these out over the grid.
ENDPOINT_METHODS = ("rm-classification", "rm-softmax")


def served_models(models=None, prices=None, *logs: pd.DataFrame) -> list[str]:
    """The arms, in index order: ``models`` as configured, else the price sheet's models sorted
    (some may have no logged rows yet), else the models named in ``logs``, sorted. Models the logs
    name beyond the list (one removed from the served pool) follow, sorted: their rows stay valid
    training data (the service gives such a model probability 0)."""
    logged = set().union(*(set(df[S.MODEL]) for df in logs)) if logs else set()
    if models or prices:
        out = list(models) if models else sorted(prices)
        return out + sorted(logged - set(out))
    return sorted(logged)


def check_methods(methods) -> list[str]:
    """``methods`` (default :data:`DEFAULT_METHODS`) as a list; unknown names raise KeyError."""
    methods = list(methods or DEFAULT_METHODS)
    unknown = [m for m in methods if m not in ROUTERS]
    if unknown:
        raise KeyError(f"unknown router(s) {unknown}; registered: {', '.join(ROUTERS)}")
    return methods


def fit_routing_data(train: pd.DataFrame, X: np.ndarray, val: pd.DataFrame, X_val: np.ndarray, *,
                     models=None, prices=None, nuisances: NuisanceConfig | None = None,
                     fold_map=None, eval_set=None, X_eval: np.ndarray | None = None) -> tuple[RoutingData, dict]:
    """Cross-fit nuisances on validated training logs and build DR utilities for train and val.

    Parameters
    ----------
    train, val : validated observational logs (n and m rows)
    X, X_val : ndarray (n, d), (m, d)    their prompts' embeddings, row-aligned
    models : list of str or None         the arms (see :func:`served_models`)
    prices : price sheet ``{model: (input, output)}`` or None
    nuisances : NuisanceConfig or None   folds, propensity source, clip and seed
    fold_map : callable or None          runs the folds (e.g. as Prefect tasks)
    eval_set : FullFeedback or None      an evaluation set (models run on the same prompts): its outcomes
                                         join the outcome models (:func:`~causal_router.policy.data.scored_rows`)
    X_eval : ndarray (n_prompts, d)      its prompts' embeddings, aligned with ``eval_set.prompt_ids``

    Returns
    -------
    data : RoutingData
    meta : dict    what went in (sizes, arms, nuisance settings, tokens per character, seconds)
    """
    cfg = nuisances or NuisanceConfig()
    models = served_models(models, prices, train, val)
    missing = sorted(set(models) - set(train[S.MODEL]))
    if missing and not prices:
        raise ValueError(f"no logged rows for model(s) {missing}: give a price sheet so they can still be costed")
    scored = None if eval_set is None else scored_rows(eval_set, X_eval, models)
    start = time.perf_counter()
    with one_blas_thread():  # the same bytes whatever the machine's cores and the folds' concurrency
        data = build_routing_data(train, X, val, X_val, models, cv=cfg.cv, propensity=cfg.propensity, clip=cfg.clip,
                                  prices=prices, random_state=cfg.seed, fold_map=fold_map, scored=scored)
    meta = {"n_train": len(train), "n_val": len(val), "n_scored": 0 if scored is None else len(scored),
            "models": models, "cv": cfg.cv,
            "propensity": cfg.propensity, "clip": cfg.clip, "seed": cfg.seed,
            "seconds": time.perf_counter() - start,
            # for routing new prompts whose token counts are unknown
            "tokens_per_char": S.tokens_per_char(train),
            # a model's cold start in the service ends with enough rows (serve.cold_start_outcomes)
            "rows_per_model": {m: int(n) for m, n in pd.concat([train[S.MODEL], val[S.MODEL]]).value_counts().items()
                               if m in models}}
    return data, meta


def fit_endpoint(data: RoutingData, method: str, lam: float, params: dict | None = None):
    """One endpoint router (a method of :data:`ENDPOINT_METHODS`) fitted at a single lambda."""
    with torch_threads(1), one_blas_thread():
        return get_router(method, **(params or {}).get(method, {})).fit(data, [lam])


_WORKER: dict = {}


def _init_worker(data: RoutingData) -> None:
    _WORKER["data"] = data  # inherited from the parent by fork, never pickled


def _fit_part(method: str, lam: float, params: dict | None):
    start = time.perf_counter()
    router = fit_endpoint(_WORKER["data"], method, lam, params)
    # sent back as plain pickle bytes: torch's multiprocessing pickler would share the tensors' storage
    # through file descriptors, which hung the hand-back in `causal-router train --jobs 2`
    return pickle.dumps(router, protocol=pickle.HIGHEST_PROTOCOL), time.perf_counter() - start


def fit_endpoints_parallel(data: RoutingData, lambdas, methods, params: dict | None = None, jobs: int = 2):
    """The endpoint routers of ``methods`` fitted one per lambda in ``jobs`` forked processes (the flow's
    fan-out on one machine): {method: [router per lambda]} for :func:`fit_routers`'s ``endpoints``, and
    {method: seconds summed over its parts}. Each part is seeded and runs on one thread as it would in
    this process, so the merged routers hold the same weights as fitted here one after the other."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    work = [(m, float(lam)) for m in methods for lam in lambdas]
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("fork"), initializer=_init_worker,
                             initargs=(data,)) as pool:
        done = [f.result() for f in [pool.submit(_fit_part, m, lam, params) for m, lam in work]]
    parts, seconds = {}, {}
    for (m, _), (blob, sec) in zip(work, done):
        parts.setdefault(m, []).append(pickle.loads(blob))
        seconds[m] = seconds.get(m, 0.0) + sec
    return parts, seconds


def fit_routers(data: RoutingData, lambdas, methods=None, params: dict | None = None, threads: int = 1,
                endpoints: dict | None = None, jobs: int = 1):
    """Fit the named routers (default :data:`DEFAULT_METHODS`) in order.

    ``endpoints`` maps an endpoint method to its routers already fitted one per lambda (the flow's
    fan-out): they are merged rather than refitted. RM-Interval starts from the RM-Softmax
    endpoints when both are trained with default settings. ``jobs`` > 1 fits the other endpoint
    methods' heads in that many forked processes (:func:`fit_endpoints_parallel`; where fork is
    unavailable, one after the other): the same routers, sooner where cores are free.

    Returns
    -------
    routers : dict name -> fitted router
    seconds : dict name -> training wall time (for heads fitted in parallel: their parts' summed)
    """
    methods = check_methods(methods)
    params, endpoints = params or {}, dict(endpoints or {})
    routers, seconds = {}, {}
    todo = [m for m in methods if m in ENDPOINT_METHODS and m not in endpoints]
    if jobs > 1 and todo and "fork" in _start_methods():
        fitted, seconds = fit_endpoints_parallel(data, [float(x) for x in lambdas], todo, params, jobs)
        endpoints.update(fitted)
    with torch_threads(threads), one_blas_thread():
        for name in methods:
            start = time.perf_counter()
            if name in endpoints:
                # as fitted here: this process's nuisance models and arm posterior (the flow's parts were
                # fitted on copies, in other tasks)
                router = ROUTERS[name].merge(endpoints[name])
                router.attach(data)
            else:
                router = get_router(name, **params.get(name, {}))
                if name == "rm-interval" and "rm-softmax" in routers and not params.get(name):
                    # same grid and hyperparameters: reuse the RM-Softmax endpoints as initial heads
                    router.set_params(**routers["rm-softmax"].get_params())
                    router.fit(data, lambdas, endpoints=routers["rm-softmax"])
                else:
                    router.fit(data, lambdas)
            routers[name] = router
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
    return routers, seconds


def _start_methods() -> list[str]:
    import multiprocessing as mp

    return mp.get_all_start_methods()


def train_routerset(data: RoutingData, lambdas, methods=None, *, encoder_key: str = "", meta: dict | None = None,
                    params: dict | None = None, endpoints: dict | None = None, out_dir=None,
                    jobs: int = 1) -> RouterSet:
    """Train the routers on routing data and build the :class:`RouterSet` (saved to ``out_dir``).

    Parameters
    ----------
    data : RoutingData
    lambdas : sequence of float     the grid
    methods : list of str or None   routers of the registry (default :data:`DEFAULT_METHODS`)
    encoder_key : str               identifies the features the routers expect
    meta : dict or None             from :func:`fit_routing_data`
    params : dict or None           hyperparameters per router name
    endpoints : dict or None        endpoint routers fitted per lambda (see :func:`fit_routers`)
    out_dir : path or None
    jobs : int                      processes for the endpoint heads (see :func:`fit_routers`)
    """
    grid = [float(x) for x in lambdas]
    routers, seconds = fit_routers(data, grid, methods, params, endpoints=endpoints, jobs=jobs)
    meta = {**(meta or {}), "train_seconds": seconds,
            "clip_report": data.clip_report.to_records() if data.clip_report is not None else None}
    rs = RouterSet(list(data.models), grid, routers, encoder_key, meta)
    if out_dir is not None:
        rs.save(out_dir)
    return rs


def train_from_logs(train: pd.DataFrame, X: np.ndarray, val: pd.DataFrame, X_val: np.ndarray, lambdas,
                    methods=None, *, models=None, prices=None, nuisances: NuisanceConfig | None = None,
                    encoder_key: str = "", params: dict | None = None, out_dir: str | Path | None = None,
                    fold_map=None) -> RouterSet:
    """Validated logs and their embeddings to a (saved) router set: :func:`fit_routing_data` then
    :func:`train_routerset`. Arrays as in :func:`fit_routing_data`."""
    methods = check_methods(methods)
    data, meta = fit_routing_data(train, X, val, X_val, models=models, prices=prices, nuisances=nuisances,
                                  fold_map=fold_map)
    return train_routerset(data, lambdas, methods, encoder_key=encoder_key, meta=meta, params=params,
                           out_dir=out_dir)
