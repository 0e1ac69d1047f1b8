"""Are a registered version's artifacts still there? Checked before loading, and by ``lineage``.

MLflow answers a version whose artifact folder was deleted with ``No such artifact: ''``. Here
:func:`missing_artifacts` looks at the version's download location: for file artifacts (the
embedded store) the folder, its ``MLmodel`` and every artifact the pyfunc flavour names (the
router set, the serving config, the shipped code); for remote artifact stores whether anything
is listed there. :func:`check_artifacts` and :func:`load_model` raise a
:class:`~causal_router.errors.MissingArtifactError` naming the version and the missing path.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..errors import MissingArtifactError

log = logging.getLogger(__name__)

__all__ = ["MissingArtifactError", "check_artifacts", "load_model", "missing_artifacts"]


def missing_artifacts(client, name: str, version) -> tuple[str, list[str]]:
    """``(location, missing paths)`` of version ``version`` of registered model ``name``; no
    missing paths when everything the model needs is there."""
    location = client.get_model_version_download_uri(name, str(version))
    parsed = urlparse(location)
    if parsed.scheme not in ("", "file"):
        import mlflow

        try:
            listed = mlflow.artifacts.list_artifacts(artifact_uri=location)
        except Exception as err:  # an unreachable or empty remote location
            log.debug("cannot list %s: %s", location, err)
            listed = []
        return location, ([] if listed else [location])
    root = Path(unquote(parsed.path))
    if not root.is_dir():
        return str(root), [str(root)]
    mlmodel = root / "MLmodel"
    if not mlmodel.is_file():
        return str(root), [str(mlmodel)]
    import yaml

    try:
        spec = yaml.safe_load(mlmodel.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return str(root), [f"{mlmodel} (unreadable)"]
    pyfunc = (spec.get("flavors") or {}).get("python_function") or {}
    wanted = [a.get("path") for a in (pyfunc.get("artifacts") or {}).values() if isinstance(a, dict)]
    wanted.append(pyfunc.get("code"))
    if isinstance(pyfunc.get("model_code_path"), str):  # copied into the model under its own name
        wanted.append(Path(pyfunc["model_code_path"]).name)
    return str(root), [str(root / p) for p in wanted if isinstance(p, str) and p and not (root / p).exists()]


def check_artifacts(client, name: str, version) -> str:
    """The artifact location of ``name`` version ``version``; raises :class:`MissingArtifactError`
    naming the version and the missing path when any of its artifacts are gone."""
    location, missing = missing_artifacts(client, name, version)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        where = "" if missing[0] == location else f" (artifact location {location})"
        raise MissingArtifactError(
            f"{name} version {version}: its model artifacts are missing: {missing[0]}{more}{where}. The files were "
            "deleted or moved: restore them, or register the model again (python -m flows.train).")
    return location


def load_model(model_uri: str, **kwargs):
    """``mlflow.pyfunc.load_model`` of a ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` URI, after
    :func:`check_artifacts` (other URIs are loaded as they are; MLflow's "No such artifact" error
    is then reworded to name the URI)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from .names import resolve_version
    from .tracking import client as default_client

    if model_uri.startswith("models:/"):
        c = default_client()
        mv = resolve_version(c, model_uri)
        check_artifacts(c, mv.name, mv.version)
    try:
        return mlflow.pyfunc.load_model(model_uri, **kwargs)
    except MlflowException as err:
        if "No such artifact" in str(err) or "No such file" in str(err):
            raise MissingArtifactError(f"{model_uri}: its model artifacts are missing ({err})") from None
        raise
