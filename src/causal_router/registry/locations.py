"""Where the tracking store lives on disk: the project folder, ``mlruns/`` and a SQLite URI's file.

Below :mod:`.tracking` (which configures MLflow) and :mod:`.integrity` (which checks the store
before MLflow opens it), so that neither has to import the other for a path. Imports nothing of
MLflow and nothing else of the package.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

MLRUNS = "mlruns"
DB_NAME = "mlflow.db"
PROJECT_MARKERS = ("params.yaml", "pyproject.toml", ".git")


def find_project_root(start: str | Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the current folder) holding
    ``params.yaml``, ``pyproject.toml`` or ``.git``; None when there is none."""
    here = Path(start if start is not None else Path.cwd()).expanduser().resolve()
    for folder in (here, *here.parents):
        if any((folder / m).exists() for m in PROJECT_MARKERS):
            return folder
    return None


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    if not uri.startswith("sqlite:"):
        return None
    path = unquote(urlparse(uri).path)
    return Path(path) if path and path != "/:memory:" else None
