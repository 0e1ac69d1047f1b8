"""The environment, resolved in one place: the project folder, embedded stores or servers, Prefect.

Embedded (nothing set): a SQLite MLflow store under ``<project>/mlruns`` with file artifacts beside
it, Prefect's temporary local server with its home in ``<project>/.cache/prefect`` (one per project,
never ``~/.prefect`` shared with every other project), threads, a SQLite decision log. Servers: the
environment variables below (``infra/README.md``, ``infra/.env.example``). Every entry point (CLI,
flows, the pyfunc snippet, lineage, the stack) resolves them through this module; MLflow's client
set-up is :mod:`causal_router.registry.tracking`.

The project is found from the current folder by walking up to the first folder holding
``params.yaml``, ``pyproject.toml`` or ``.git``; outside a project with nothing set a
:class:`ConfigError` says what to set. Nothing here imports MLflow or Prefect.

Environment
-----------
MLFLOW_TRACKING_URI          MLflow server (e.g. ``http://127.0.0.1:5000``); unset: ``<project>/mlruns/mlflow.db``.
PREFECT_API_URL              Prefect server (e.g. ``http://127.0.0.1:4200/api``); unset: a temporary local one.
PREFECT_HOME                 Prefect's home (its database, results); unset: ``<project>/.cache/prefect``.
CAUSAL_ROUTER_TASK_RUNNER    ``local``, ``dask`` or ``dask://HOST:PORT``; unset: ``runner`` in params.yaml.
CAUSAL_ROUTER_DECISIONS_URI  decision log database (SQLAlchemy URI); unset: ``<project>/decisions/decisions.db``.
CAUSAL_ROUTER_DVC_REMOTE     DVC remote URL (folder, ``s3://``, ``gs://``); unset: ``.dvc/config``'s default.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..errors import CausalRouterError

__all__ = ["ConfigError", "decisions_uri", "dvc_remote", "environment", "find_project_root", "prefect_defaults",
           "prefect_home", "project_root", "task_runner_setting", "tracking_uri", "use_project_prefect"]

TRACKING_ENV = "MLFLOW_TRACKING_URI"
PREFECT_ENV = "PREFECT_API_URL"
PREFECT_HOME_ENV = "PREFECT_HOME"
RUNNER_ENV = "CAUSAL_ROUTER_TASK_RUNNER"
DECISIONS_ENV = "CAUSAL_ROUTER_DECISIONS_URI"
DVC_REMOTE_ENV = "CAUSAL_ROUTER_DVC_REMOTE"
PROJECT_MARKERS = ("params.yaml", "pyproject.toml", ".git")
MLRUNS = "mlruns"
DB_NAME = "mlflow.db"
#: Prefect's home inside the project (gitignored: ``.cache/``).
PREFECT_HOME = Path(".cache") / "prefect"


class ConfigError(CausalRouterError, RuntimeError):
    """No store can be resolved: the message says what to set."""


def find_project_root(start: str | Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the current folder) holding
    ``params.yaml``, ``pyproject.toml`` or ``.git``; None when there is none."""
    here = Path(start if start is not None else Path.cwd()).expanduser().resolve()
    for folder in (here, *here.parents):
        if any((folder / m).exists() for m in PROJECT_MARKERS):
            return folder
    return None


def project_root(root: str | Path | None = None, what: str = TRACKING_ENV) -> Path:
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
    return os.environ.get(TRACKING_ENV) or f"sqlite:///{project_root(root) / MLRUNS / DB_NAME}"


def decisions_uri(root: str | Path | None = None) -> str:
    """``$CAUSAL_ROUTER_DECISIONS_URI``, else ``sqlite:///<project>/decisions/decisions.db``."""
    return (os.environ.get(DECISIONS_ENV)
            or f"sqlite:///{project_root(root, DECISIONS_ENV) / 'decisions' / 'decisions.db'}")


def task_runner_setting(runner: str | None = None) -> str:
    """``$CAUSAL_ROUTER_TASK_RUNNER``, else ``runner`` (params.yaml's, :attr:`Settings.runner`), else ``local``."""
    return os.environ.get(RUNNER_ENV) or runner or "local"


def dvc_remote() -> str | None:
    """``$CAUSAL_ROUTER_DVC_REMOTE`` (None: ``.dvc/config``'s default remote)."""
    return os.environ.get(DVC_REMOTE_ENV) or None


def prefect_home(root: str | Path | None = None) -> Path | None:
    """``$PREFECT_HOME``, else ``<project>/.cache/prefect``; None outside a project (Prefect's own default)."""
    if os.environ.get(PREFECT_HOME_ENV):
        return Path(os.environ[PREFECT_HOME_ENV])
    base = Path(root).resolve() if root is not None else find_project_root()
    return None if base is None else base / PREFECT_HOME


def prefect_defaults(root: str | Path | None = None) -> dict[str, str]:
    """The Prefect settings the project runs with unless the environment sets them: its home in the
    project, no analytics or telemetry calls home, and, with the temporary server (no
    ``PREFECT_API_URL``), no log shipping to an API that stops with the process ("Error logging to API")."""
    out = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
    home = prefect_home(root)
    if home is not None:
        out[PREFECT_HOME_ENV] = str(home)
        user_profiles = Path.home() / ".prefect" / "profiles.toml"
        if user_profiles.is_file():  # the user's own profiles (an API URL, say) still apply
            out["PREFECT_PROFILES_PATH"] = str(user_profiles)
    if not os.environ.get(PREFECT_ENV):
        out["PREFECT_LOGGING_TO_API_ENABLED"] = "false"
    return out


def use_project_prefect(root: str | Path | None = None) -> dict[str, str]:
    """Set :func:`prefect_defaults` in ``os.environ`` where unset; call it before Prefect is imported
    (its settings are read once, at import). Returns what it set. Also turns off MLflow's artifact
    download progress bars (one per artifact) and its INFO lines (table set-up, signature checks)
    unless ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR`` / ``MLFLOW_LOGGING_LEVEL`` are set."""
    wanted = {**prefect_defaults(root), "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
              "MLFLOW_LOGGING_LEVEL": "WARNING"}
    done = {k: v for k, v in wanted.items() if k not in os.environ}
    os.environ.update(done)
    if PREFECT_HOME_ENV in done:
        Path(done[PREFECT_HOME_ENV]).mkdir(parents=True, exist_ok=True)
    return done


def environment(root: str | Path | None = None) -> dict:
    """Everything that decides embedded versus servers, resolved (``None`` = embedded default)."""
    base = None
    try:
        base = project_root(root)
    except ConfigError:
        pass
    runner = None
    if base is not None and (base / "params.yaml").is_file():
        from .params import load_settings

        try:
            runner = load_settings(base / "params.yaml").runner
        except CausalRouterError:
            runner = None
    return {
        "project": str(base) if base else None,
        TRACKING_ENV: os.environ.get(TRACKING_ENV) or (tracking_uri(base) if base else None),
        PREFECT_ENV: os.environ.get(PREFECT_ENV) or None,
        PREFECT_HOME_ENV: str(prefect_home(base)) if prefect_home(base) else None,
        RUNNER_ENV: task_runner_setting(runner),
        DECISIONS_ENV: os.environ.get(DECISIONS_ENV) or (decisions_uri(base) if base else None),
        DVC_REMOTE_ENV: dvc_remote(),
    }


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    if not uri.startswith("sqlite:"):
        return None
    path = unquote(urlparse(uri).path)
    return Path(path) if path and path != "/:memory:" else None
