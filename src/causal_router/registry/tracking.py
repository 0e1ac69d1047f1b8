"""Where MLflow writes: a SQLite store under ``<root>/mlruns`` with file artifacts beside it.

Nothing happens at import. :func:`configure` points MLflow's tracking and registry at the store,
creates ``mlruns/`` and the experiment; every other function of :mod:`causal_router.registry`
calls :func:`ensure_configured`, which configures once per process unless the caller already
chose a tracking URI (``MLFLOW_TRACKING_URI`` or ``mlflow.set_tracking_uri``).

Environment
-----------
MLFLOW_TRACKING_URI          overrides the SQLite store (e.g. a PostgreSQL-backed server).
CAUSAL_ROUTER_EXPERIMENT     experiment name (default ``causal-router``).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

DEFAULT_EXPERIMENT = "causal-router"
EXPERIMENT_ENV = "CAUSAL_ROUTER_EXPERIMENT"
TRACKING_ENV = "MLFLOW_TRACKING_URI"
MLRUNS = "mlruns"
DB_NAME = "mlflow.db"
ARTIFACTS = "artifacts"

_state: dict = {"uri": None, "experiment_id": None}


def tracking_uri(root: str | Path | None = None) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<root or cwd>/mlruns/mlflow.db`` (absolute)."""
    env = os.environ.get(TRACKING_ENV)
    if env:
        return env
    base = Path(root if root is not None else Path.cwd()).expanduser().resolve()
    return f"sqlite:///{base / MLRUNS / DB_NAME}"


def experiment_name(name: str | None = None) -> str:
    """``name``, else ``$CAUSAL_ROUTER_EXPERIMENT``, else ``causal-router``."""
    return name or os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    if not uri.startswith("sqlite:"):
        return None
    path = unquote(urlparse(uri).path)
    return Path(path) if path and path != "/:memory:" else None


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
        Folder holding ``mlruns/`` (default: the current directory). Ignored when
        ``MLFLOW_TRACKING_URI`` is set.
    experiment : str or None
        Experiment name (default :func:`experiment_name`). Created on first use with its
        artifacts under ``mlruns/artifacts`` (file URI).
    """
    return _setup(tracking_uri(root), experiment)


def _setup(uri: str, experiment: str | None = None) -> str:
    import mlflow

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
