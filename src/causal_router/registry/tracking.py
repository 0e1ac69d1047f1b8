"""MLflow's client set-up: where MLflow writes, resolved by :mod:`causal_router.settings.env`.

Before MLflow opens a store, :mod:`.integrity` checks its schema and that it still holds the
champions it held (a damaged or emptied store is an error, never a fresh start).

Nothing happens at import. :func:`configure` points MLflow's tracking and registry at the store,
creates ``mlruns/`` and the experiment; every other function of :mod:`causal_router.registry`
calls :func:`ensure_configured`, which configures once per process unless the caller already
chose a tracking URI (``MLFLOW_TRACKING_URI`` or ``mlflow.set_tracking_uri``). The project folder,
the store's default URI and the other services' settings are :mod:`causal_router.settings.env`'s.

Environment
-----------
CAUSAL_ROUTER_EXPERIMENT     experiment name (default ``causal-router``).
CAUSAL_ROUTER_STATE_DIR      markers of non-file stores (:mod:`.integrity`); unset: ``<project>/mlruns/expected``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..settings.env import MLRUNS, TRACKING_ENV, ConfigError, sqlite_path, tracking_uri

__all__ = ["MLRUNS", "ConfigError", "artifact_location", "client", "configure", "ensure_configured",
           "experiment_name", "sqlite_path", "tracking_uri"]

DEFAULT_EXPERIMENT = "causal-router"
EXPERIMENT_ENV = "CAUSAL_ROUTER_EXPERIMENT"
ARTIFACTS = "artifacts"

_state: dict = {"uri": None, "experiment_id": None}


def experiment_name(name: str | None = None) -> str:
    """``name``, else ``$CAUSAL_ROUTER_EXPERIMENT``, else ``causal-router``."""
    return name or os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT


def artifact_location(uri: str) -> str | None:
    """File URI of the artifact folder next to a SQLite store (``<db dir>/artifacts``); None for
    servers, which choose their own."""
    db = sqlite_path(uri)
    return (db.parent / ARTIFACTS).resolve().as_uri() if db is not None else None


def configure(root: str | Path | None = None, experiment: str | None = None) -> str:
    """Point MLflow at the project's store and experiment; returns the tracking URI.

    Parameters
    ----------
    root : str or Path or None
        Folder holding ``mlruns/`` (default: the project found from the current folder, see
        :func:`find_project_root`). Ignored when ``MLFLOW_TRACKING_URI`` is set.
    experiment : str or None
        Experiment name (default :func:`experiment_name`). Created on first use with its
        artifacts under ``mlruns/artifacts`` (file URI).

    Raises
    ------
    ConfigError
        No ``MLFLOW_TRACKING_URI`` and no project at or above the current folder.
    StoreDamagedError
        The store is damaged, emptied or not MLflow's, or lost a champion it held
        (:mod:`causal_router.registry.integrity`).
    """
    return _setup(tracking_uri(root), experiment)


def _setup(uri: str, experiment: str | None = None) -> str:
    import mlflow

    from . import integrity

    # before MLflow opens it: MLflow would silently re-create an emptied or missing database
    expected = integrity.preflight(uri)
    db = sqlite_path(uri)
    if db is not None:
        (db.parent / ARTIFACTS).mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    name = experiment_name(experiment)
    client = mlflow.MlflowClient(uri, uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        exp_id = client.create_experiment(name, artifact_location=artifact_location(uri))
    else:
        exp_id = exp.experiment_id
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp_id)
    mlflow.set_experiment(experiment_id=exp_id)
    integrity.check_expected(uri, client, expected)  # a champion it held is gone: damaged
    _state.update(uri=uri, experiment_id=exp_id)
    return uri


def ensure_configured() -> str:
    """Configure once per process: keep a tracking URI the caller chose, else the default store."""
    import mlflow

    current = mlflow.get_tracking_uri()
    if _state["uri"] is not None and _state["uri"] == current:
        return current
    if _uri_was_set():
        return _setup(current)
    return configure()


def _uri_was_set() -> bool:
    if os.environ.get(TRACKING_ENV):
        return True
    try:
        from mlflow.tracking._tracking_service.utils import is_tracking_uri_set
    except ImportError:  # pragma: no cover - private helper moved
        return False
    return bool(is_tracking_uri_set())


def client():
    """An ``MlflowClient`` on the configured tracking and registry URIs."""
    import mlflow

    uri = ensure_configured()
    return mlflow.MlflowClient(uri, uri)
