"""From logs to fitted routers: cross-fit nuisances, build DR utilities, train the registry's routers."""

from __future__ import annotations

import contextlib
import logging
import time

import numpy as np
import pandas as pd

from ..causal.crossfit import CrossFitter
from ..causal.outcome import PooledRidge, TokenCostModel
from ..causal.scores import clip_report, utilities
from ..data import schema as S
from .data import RoutingData
from .routers import ROUTERS, get_router

log = logging.getLogger(__name__)

#: Routers trained when none are named.
DEFAULT_METHODS = ("random", "cheapest", "best-single", "naive", "dr-regress", "rm-classification",
                   "rm-softmax", "rm-interval")


def _col(df: pd.DataFrame, name: str):
    return df[name].to_numpy(dtype=float) if name in df else None


def encode_treatment(logs: pd.DataFrame, models) -> np.ndarray:
    """Logged model names -> indices into ``models``; unknown names raise."""
    index = {m: k for k, m in enumerate(models)}
    unknown = sorted(set(logs[S.MODEL]) - set(index))
    if unknown:
        raise ValueError(f"logs name models not in the model list: {unknown}")
    return logs[S.MODEL].map(index).to_numpy(dtype=int).copy()  # writable: torch wraps it


def price_array(prices, models) -> np.ndarray | None:
    """A price sheet ``{model: (input, output)}`` as an array (K, 2) in ``models`` order, or None."""
    if prices is None:
        return None
    missing = [m for m in models if m not in prices]
    if missing:
        raise ValueError(f"price sheet lacks models {missing}")
    return np.array([prices[m] for m in models], dtype=float)


def log_arrays(logs: pd.DataFrame, models) -> dict:
    """A log's columns as the arrays the nuisance models take: ``treatment`` (n,) int, ``quality``,
    ``cost`` (n,), and ``input_tokens``, ``output_tokens``, ``propensity`` (n,) or None."""
    return {"treatment": encode_treatment(logs, models), "quality": logs[S.SCORE].to_numpy(float),
            "cost": logs[S.COST].to_numpy(float), "input_tokens": _col(logs, S.INPUT_TOKENS),
            "output_tokens": _col(logs, S.OUTPUT_TOKENS), "propensity": _col(logs, S.PROPENSITY)}


def build_routing_data(train: pd.DataFrame, X: np.ndarray, val: pd.DataFrame | None = None,
                       X_val: np.ndarray | None = None, models=None, *, cv: int = 5,
                       propensity: str = "fitted", clip: float = 0.1, estimator: str = "dr",
                       cost_estimator: str | None = None, prices=None, quality_model=None,
                       propensity_model=None, random_state: int = 0, fold_map=None) -> RoutingData:
    """Cross-fit nuisances on the training logs and build pseudo-utilities for train and val.

    Parameters
    ----------
    train, val : observational logs (DataFrames, DESIGN.md section 3)
    X, X_val : ndarray (n, d), (m, d)
        Prompt features aligned with the rows of ``train`` and ``val``.
    models : sequence of str or None
        The K models, in index order (default: sorted names in ``train``).
    propensity : {"fitted", "logged"}
    clip : float
        Propensity floor for DR weights (reported, never silent).
    prices : mapping model -> (usd_per_m_input, usd_per_m_output) or None
        Price sheet; without it, prices are recovered from the logs' costs and token counts.
    fold_map : callable or None
        Runs the cross-fitting folds (see :meth:`CrossFitter.fit`).
    """
    models = list(models) if models is not None else sorted(train[S.MODEL].unique())
    K = len(models)
    tr = log_arrays(train, models)
    t, a, c, tin = tr["treatment"], tr["quality"], tr["cost"], tr["input_tokens"]
    cf = CrossFitter(
        n_arms=K,
        propensity_model=propensity_model,
        # rare models can be absent from a cross-fitting fold: the pooled model still predicts them
        quality_model=quality_model if quality_model is not None else PooledRidge(n_arms=K, require_all_arms=False),
        cost_model=TokenCostModel(prices=price_array(prices, models), n_arms=K),
        cv=cv, propensity=propensity, random_state=random_state,
    )
    cf.fit(X, t, a, c, tin, tr["output_tokens"], logged_propensity=tr["propensity"], fold_map=fold_map)
    U = utilities(t, a, c, cf.nuisances_, estimator, clip, cost_estimator)
    report = clip_report(t, cf.nuisances_.logged_propensity, K, clip, models)
    log.info("%s", report.summary())
    data = RoutingData(models, X, t, a, c, tin, U, cf, clip_report=report)
    if val is not None:
        va = log_arrays(val, models)
        nv = cf.predict(X_val, va["treatment"], va["input_tokens"], va["propensity"])
        data.X_val, data.val_input_tokens = X_val, va["input_tokens"]
        data.val_utilities = utilities(va["treatment"], va["quality"], va["cost"], nv, estimator, clip,
                                       cost_estimator)
    return data


@contextlib.contextmanager
def torch_threads(n: int):
    """Temporarily set torch's intra-op threads: the routers' networks are small, and on a shared
    2-core machine two threads contend badly (seen: 0.6 s vs 27 s for one fit)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_routers(data: RoutingData, lambdas, methods=None, params: dict | None = None, threads: int = 1):
    """Fit the named routers (default :data:`DEFAULT_METHODS`).

    Returns
    -------
    routers : dict name -> fitted router
    seconds : dict name -> training wall time
    """
    methods = list(methods or DEFAULT_METHODS)
    unknown = [m for m in methods if m not in ROUTERS]
    if unknown:
        raise KeyError(f"unknown router(s) {unknown}; registered: {', '.join(ROUTERS)}")
    params = params or {}
    routers, seconds = {}, {}
    with torch_threads(threads):
        _fit_each(data, lambdas, methods, params, routers, seconds)
    return routers, seconds


#: Routers trained one network per lambda: the flows fan these out over the grid.
ENDPOINT_METHODS = ("rm-classification", "rm-softmax")


def fit_endpoint(data: RoutingData, method: str, lam: float, params: dict | None = None):
    """One endpoint router (a method of :data:`ENDPOINT_METHODS`) fitted at a single lambda."""
    return get_router(method, **(params or {}).get(method, {})).fit(data, [lam])


def _fit_each(data, lambdas, methods, params, routers, seconds, endpoints=None):
    """Fits ``methods`` in order into ``routers``; ``endpoints`` maps an endpoint method to its
    routers already fitted per lambda (merged rather than refitted)."""
    endpoints = endpoints or {}
    for name in methods:
        start = time.perf_counter()
        if name in endpoints:
            router = ROUTERS[name].merge(endpoints[name])
        else:
            router = get_router(name, **params.get(name, {}))
            if name == "rm-interval" and "rm-softmax" in routers and not params.get(name):
                # same grid and hyperparameters: reuse the RM-Softmax endpoints as initial heads
                router.set_params(**routers["rm-softmax"].get_params())
                router.fit(data, lambdas, endpoints=routers["rm-softmax"])
            else:
                router.fit(data, lambdas)
        routers[name] = router
        seconds[name] = time.perf_counter() - start


def assemble_routers(data: RoutingData, lambdas, methods, endpoints: dict, params: dict | None = None,
                     threads: int = 1):
    """Like :func:`fit_routers`, with the endpoint routers given per lambda (from a fan-out)."""
    routers, seconds = {}, {}
    with torch_threads(threads):
        _fit_each(data, lambdas, list(methods), params or {}, routers, seconds, endpoints)
    return routers, seconds
