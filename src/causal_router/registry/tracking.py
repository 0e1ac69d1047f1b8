"""The one place that decides embedded versus servers, and where MLflow writes.

Embedded (nothing set): a SQLite store under ``<project>/mlruns`` with file artifacts beside
it, Prefect's temporary local server, threads, a SQLite decision log. Servers: the environment
variables below (``infra/README.md``, ``infra/.env.example``). Every entry point (CLI, flows,
the pyfunc snippet, lineage, the stack) resolves them through this module.

The project is found from the current folder by walking up to the first folder holding
``params.yaml``, ``pyproject.toml`` or ``.git``, so no command ever creates a stray
``./mlflow.db``; outside a project with no ``MLFLOW_TRACKING_URI`` a :class:`ConfigError` says
what to set. Before MLflow opens a store, :mod:`.integrity` checks its schema and that it still
holds the champions it held (a damaged or emptied store is an error, never a fresh start).

Nothing happens at import. :func:`configure` points MLflow's tracking and registry at the store,
creates ``mlruns/`` and the experiment; every other function of :mod:`causal_router.registry`
calls :func:`ensure_configured`, which configures once per process unless the caller already
chose a tracking URI (``MLFLOW_TRACKING_URI`` or ``mlflow.set_tracking_uri``).

Environment
-----------
MLFLOW_TRACKING_URI          MLflow server (e.g. ``http://127.0.0.1:5000``); unset: ``<project>/mlruns/mlflow.db``.
PREFECT_API_URL              Prefect server (e.g. ``http://127.0.0.1:4200/api``); unset: a temporary local one.
CAUSAL_ROUTER_TASK_RUNNER    ``local``, ``dask`` or ``dask://HOST:PORT``; unset: ``runner`` in params.yaml.
CAUSAL_ROUTER_DECISIONS_URI  decision log database (SQLAlchemy URI); unset: ``<project>/decisions/decisions.db``.
CAUSAL_ROUTER_DVC_REMOTE     DVC remote URL (folder, ``s3://``, ``gs://``); unset: ``.dvc/config``'s default.
CAUSAL_ROUTER_EXPERIMENT     experiment name (default ``causal-router``).
CAUSAL_ROUTER_STATE_DIR      markers of non-file stores (:mod:`.integrity`); unset: ``<project>/mlruns/expected``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CausalRouterError
from .locations import DB_NAME, MLRUNS, PROJECT_MARKERS, find_project_root, sqlite_path

DEFAULT_EXPERIMENT = "causal-router"
EXPERIMENT_ENV = "CAUSAL_ROUTER_EXPERIMENT"
TRACKING_ENV = "MLFLOW_TRACKING_URI"
ARTIFACTS = "artifacts"

PREFECT_ENV = "PREFECT_API_URL"
RUNNER_ENV = "CAUSAL_ROUTER_TASK_RUNNER"
DECISIONS_ENV = "CAUSAL_ROUTER_DECISIONS_URI"
DVC_REMOTE_ENV = "CAUSAL_ROUTER_DVC_REMOTE"

_state: dict = {"uri": None, "experiment_id": None}


class ConfigError(CausalRouterError, RuntimeError):
    """No store can be resolved: the message says what to set."""


def project_root(root: str | Path | None = None, what: str = "MLFLOW_TRACKING_URI") -> Path:
    """``root`` if given, else :func:`find_project_root`; raises :class:`ConfigError` naming ``what``
    to set when the current folder is not inside a project."""
    if root is not None:
        return Path(root).expanduser().resolve()
    found = find_project_root()
    if found is None:
        raise ConfigError(
            f"{Path.cwd()} is not inside a causal-router project (no {', '.join(PROJECT_MARKERS)} here or above) "
            f"and {what} is not set: set {what} (e.g. MLFLOW_TRACKING_URI=http://127.0.0.1:5000 for a tracking "
            "server), or run the command from the project folder. See infra/README.md.")
    return found


def tracking_uri(root: str | Path | None = None) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<project>/mlruns/mlflow.db`` (absolute), the
    project being ``root`` or the one found from the current folder (:func:`project_root`)."""
    env = os.environ.get(TRACKING_ENV)
    if env:
        return env
    return f"sqlite:///{project_root(root) / MLRUNS / DB_NAME}"


def decisions_uri(root: str | Path | None = None) -> str:
    """``$CAUSAL_ROUTER_DECISIONS_URI``, else ``sqlite:///<project>/decisions/decisions.db``."""
    env = os.environ.get(DECISIONS_ENV)
    if env:
        return env
    return f"sqlite:///{project_root(root, DECISIONS_ENV) / 'decisions' / 'decisions.db'}"


def task_runner_setting(params: dict | None = None) -> str:
    """``$CAUSAL_ROUTER_TASK_RUNNER``, else params.yaml's ``runner``, else ``local``."""
    return os.environ.get(RUNNER_ENV) or (params or {}).get("runner") or "local"


def settings(root: str | Path | None = None) -> dict:
    """Everything that decides embedded versus servers, resolved (``None`` = embedded default)."""
    base = None
    try:
        base = project_root(root)
    except ConfigError:
        pass
    params = {}
    if base is not None and (base / "params.yaml").exists():
        import yaml

        params = yaml.safe_load((base / "params.yaml").read_text()) or {}
    return {
        "project": str(base) if base else None,
        TRACKING_ENV: os.environ.get(TRACKING_ENV) or (tracking_uri(base) if base else None),
        PREFECT_ENV: os.environ.get(PREFECT_ENV) or None,
        RUNNER_ENV: task_runner_setting(params),
        DECISIONS_ENV: os.environ.get(DECISIONS_ENV) or (decisions_uri(base) if base else None),
        DVC_REMOTE_ENV: os.environ.get(DVC_REMOTE_ENV) or None,
    }


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
