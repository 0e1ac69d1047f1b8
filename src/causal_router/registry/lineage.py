"""Which code and data made a router: git commit plus DVC hashes, recorded as tags and checked later.

:func:`collect_lineage` returns tags for a run and its model versions::

    git.commit, git.dirty
    data.<name>.md5      DVC hash of the data (file: md5 of its bytes; folder: "<md5>.dir")
    data.<name>.path     its path, relative to the repository root when inside it
    data.<name>.source   where the hash came from: "<file>.dvc", "dvc.lock:<stage>" or "computed"

:func:`content_hash` sums up what made a router, data (those ``data.<name>.md5`` tags), code (the
package source, :func:`code_md5`) and params (the training run's), in one md5: registration tags
each version with it (``lineage.content_hash``) and registers nothing when the newest versions
already carry the same one (:func:`causal_router.registry.runs.register_routers`).

:func:`describe` resolves ``models:/NAME@ALIAS`` (or ``/VERSION``, or a bare name: the newest;
:func:`causal_router.registry.names.resolve_version`) to its version, tags, source
run (params, metrics, tags) and says for each recorded data path whether the workspace still
holds the same data (``present``), different data (``changed``) or none (``missing``).

Hashes are DVC 3's ("md5", see :mod:`causal_router.hashing`), so a hash read from a
``.dvc`` file or ``dvc.lock`` and one computed here agree, and DVC never has to run. Legacy
(DVC 2, ``md5-dos2unix``) hashes of text files with CRLF line endings differ from the computed ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
from pathlib import Path

from ..hashing import dir_md5, file_md5, hash_path
from .names import resolve_version

log = logging.getLogger(__name__)

__all__ = ["CONTENT_TAG", "code_md5", "collect_lineage", "content_hash", "declared_hash", "describe", "dir_md5",
           "file_md5", "format_lineage", "git_state", "hash_path"]

#: The version tag holding :func:`content_hash`.
CONTENT_TAG = "lineage.content_hash"

# -- DVC metadata ----------------------------------------------------------------------------
def _yaml(path: Path):
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        log.warning("cannot read %s: %s", path, err)
        return {}
    return doc if isinstance(doc, dict) else {}


def _same(a: Path, b: Path) -> bool:
    return os.path.normpath(os.path.abspath(a)) == os.path.normpath(os.path.abspath(b))


def declared_hash(repo_root, path) -> tuple[str, str] | None:
    """``(md5, source)`` recorded by DVC for ``path``: from a ``.dvc`` file tracking exactly that
    path (``<path>.dvc`` or any ``*.dvc`` in its folder or a parent up to ``repo_root``), else from
    an ``outs`` (then ``deps``) entry of ``<repo_root>/dvc.lock``; None when DVC records nothing."""
    root = Path(repo_root).resolve()
    target = Path(path) if Path(path).is_absolute() else root / path
    target = Path(os.path.normpath(target.absolute()))
    candidates = [target.with_name(target.name + ".dvc")]
    folder = target.parent
    while True:
        candidates += sorted(folder.glob("*.dvc"))
        if _same(folder, root) or folder.parent == folder or root not in folder.parents:
            break
        folder = folder.parent
    seen = set()
    for dvc_file in candidates:
        if dvc_file in seen or not dvc_file.is_file():
            continue
        seen.add(dvc_file)
        for out in _yaml(dvc_file).get("outs") or []:
            if (isinstance(out, dict) and out.get("path") and out.get("md5")
                    and _same(dvc_file.parent / out["path"], target)):
                return str(out["md5"]), _rel(dvc_file, root)
    lock = root / "dvc.lock"
    if lock.is_file():
        stages = _yaml(lock).get("stages") or {}
        for kind in ("outs", "deps"):
            for stage, spec in stages.items():
                if not isinstance(spec, dict):
                    continue
                wdir = root / (spec.get("wdir") or "")
                for entry in spec.get(kind) or []:
                    if (isinstance(entry, dict) and entry.get("path") and entry.get("md5")
                            and _same(wdir / entry["path"], target)):
                        return str(entry["md5"]), f"dvc.lock:{stage}"
    return None


def _rel(path: Path, root: Path) -> str:
    try:
        return Path(os.path.normpath(Path(path).absolute())).relative_to(root).as_posix()
    except ValueError:
        return str(path)


# -- git -------------------------------------------------------------------------------------
def _git(repo_root, *args) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=repo_root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state(repo_root) -> dict[str, str]:
    """``{"git.commit": sha or "unknown", "git.dirty": "true" | "false" | "unknown"}`` (read-only git)."""
    commit = _git(repo_root, "rev-parse", "HEAD")
    if not commit:
        return {"git.commit": "unknown", "git.dirty": "unknown"}
    status = _git(repo_root, "status", "--porcelain", "--untracked-files=no")
    return {"git.commit": commit, "git.dirty": "unknown" if status is None else str(bool(status)).lower()}


# -- lineage tags ----------------------------------------------------------------------------
def collect_lineage(repo_root, data_paths: dict, verify: bool = True) -> dict[str, str]:
    """Lineage tags for a run and its model versions (see the module docstring).

    Parameters
    ----------
    repo_root : path of the repository (git and DVC root)
    data_paths : dict logical name (e.g. "logs", "embeddings") -> file or folder path
        (relative paths are taken from ``repo_root``)
    verify : bool
        Hash the workspace even when DVC records a hash (default). If they differ, the
        workspace's hash is recorded (it is what was used) and ``data.<name>.dvc_md5`` keeps
        DVC's. False trusts the recorded hash (fast for large folders).

    Raises
    ------
    FileNotFoundError
        A path that neither exists nor has a hash recorded by DVC.
    """
    root = Path(repo_root).resolve()
    tags = git_state(root)
    for name, path in (data_paths or {}).items():
        p = Path(path)
        full = p if p.is_absolute() else root / p
        declared = declared_hash(root, full)
        computed = hash_path(full) if (verify or declared is None) else None
        if computed is None and declared is None:
            raise FileNotFoundError(f"data {name!r}: {full} does not exist and DVC records no hash for it")
        if declared is not None and (computed is None or computed == declared[0]):
            md5, source = declared
        else:
            md5, source = computed, "computed"
            if declared is not None:
                log.warning("data %r at %s differs from its DVC-recorded hash (%s, %s): recording the workspace's",
                            name, full, declared[0], declared[1])
                tags[f"data.{name}.dvc_md5"] = declared[0]
        tags[f"data.{name}.md5"] = md5
        tags[f"data.{name}.path"] = _rel(full, root)
        tags[f"data.{name}.source"] = source
    return tags


def code_md5() -> str:
    """DVC-style hash of the package's source (``src/causal_router``, byte-code left out)."""
    return dir_md5(Path(__file__).resolve().parents[1])


def content_hash(tags: dict, params, code: str | None = None, **extra) -> str | None:
    """One md5 over what made a router: the data hashes among ``tags`` (``data.<name>.md5``, from
    :func:`collect_lineage`), ``code`` (default :func:`code_md5`), the training ``params`` (a mapping,
    e.g. the run's, or a function returning it, called only when there are data hashes) and ``extra``
    settings of the registration. None when ``tags`` record no data hash: without one, two routers
    cannot be told to be the same."""
    data = {str(k): str(v) for k, v in (tags or {}).items() if re.fullmatch(r"data\..+\.md5", str(k))}
    if not data:
        return None
    params = params() if callable(params) else params
    doc = {"data": data, "code": code or code_md5(), "params": {str(k): str(v) for k, v in (params or {}).items()},
           "extra": {str(k): str(v) for k, v in extra.items()}}
    return hashlib.md5(json.dumps(doc, sort_keys=True).encode("utf-8"), usedforsecurity=False).hexdigest()


# -- describe --------------------------------------------------------------------------------


def describe(model_uri: str, repo_root=None, client=None, check_artifacts: bool = True) -> dict:
    """Lineage of a registered router (see the module docstring).

    ``check_artifacts`` (default): a version whose model artifacts are gone raises
    :class:`~causal_router.errors.MissingArtifactError` naming the version and the missing path
    (``causal-router lineage`` then exits 1); False describes it anyway (``artifacts`` says what is missing).

    Returns
    -------
    dict with ``uri, name, version, aliases, tags, run_id, run`` (``params``, ``metrics``,
    ``tags`` without ``mlflow.*``, ``name``), ``artifacts`` (``location``, ``missing``, ``status``),
    ``git`` (``commit``, ``dirty``, ``current``, ``same``) and ``data``: name -> ``{path, md5, source,
    current_md5, status}`` with status ``present`` | ``changed`` | ``missing``.
    """
    from .tracking import client as default_client

    c = client or default_client()
    root = Path(repo_root or Path.cwd()).resolve()
    mv = resolve_version(c, model_uri)
    from .artifacts import missing_artifacts

    location, missing = missing_artifacts(c, mv.name, mv.version)
    if missing and check_artifacts:
        from .artifacts import check_artifacts as raise_missing

        raise_missing(c, mv.name, mv.version)
    mv_tags = dict(mv.tags or {})
    run_info = {}
    run_tags: dict = {}
    if mv.run_id:
        run = c.get_run(mv.run_id)
        run_tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
        run_info = {"name": run.info.run_name, "experiment_id": run.info.experiment_id,
                    "params": dict(run.data.params), "metrics": dict(run.data.metrics), "tags": run_tags,
                    "start_time": run.info.start_time, "status": run.info.status}
    merged = {**run_tags, **mv_tags}
    data = {}
    for key, value in sorted(merged.items()):
        m = re.fullmatch(r"data\.(.+)\.path", key)
        if not m:
            continue
        name = m.group(1)
        recorded = merged.get(f"data.{name}.md5")
        p = Path(value)
        full = p if p.is_absolute() else root / p
        current = hash_path(full)
        status = "missing" if current is None else "present" if current == recorded else "changed"
        data[name] = {"path": value, "md5": recorded, "source": merged.get(f"data.{name}.source"),
                      "current_md5": current, "status": status}
    now = git_state(root)
    commit = merged.get("git.commit")
    aliases = list(getattr(mv, "aliases", []) or [])
    return {"uri": model_uri, "name": mv.name, "version": str(mv.version), "aliases": aliases, "tags": mv_tags,
            "run_id": mv.run_id, "run": run_info,
            "artifacts": {"location": location, "missing": missing, "status": "missing" if missing else "present"},
            "git": {"commit": commit, "dirty": merged.get("git.dirty"), "current": now["git.commit"],
                    "same": commit not in (None, "unknown") and commit == now["git.commit"]},
            "data": data}


def format_lineage(d: dict) -> str:
    """Human-readable text of :func:`describe`'s result."""
    lines = [f"{d['name']} version {d['version']}" + (f" (aliases: {', '.join(d['aliases'])})" if d["aliases"] else "")]
    run = d.get("run") or {}
    if d.get("run_id"):
        lines.append(f"  run        {d['run_id']}" + (f" ({run.get('name')})" if run.get("name") else ""))
    art = d.get("artifacts") or {}
    if art.get("missing"):
        lines.append(f"  artifacts  MISSING {', '.join(art['missing'])}")
    elif art:
        lines.append(f"  artifacts  present at {art['location']}")
    g = d["git"]
    if g.get("commit"):
        here = "same as the workspace" if g["same"] else f"workspace at {g['current']}"
        lines.append(f"  git        {g['commit']} (dirty: {g.get('dirty')}; {here})")
    else:
        lines.append("  git        not recorded")
    if d["data"]:
        lines.append("  data")
        width = max(len(n) for n in d["data"])
        for name, v in d["data"].items():
            extra = f" (now {v['current_md5']})" if v["status"] == "changed" else ""
            lines.append(f"    {name:<{width}}  {v['status']:<8} {v['path']}  md5 {v['md5']}"
                         f" [{v.get('source') or '?'}]{extra}")
    else:
        lines.append("  data       no data hashes recorded")
    promo = {k[len("promotion."):]: v for k, v in d["tags"].items() if k.startswith("promotion.")
             and not k.startswith("promotion.last_challenge.")}
    if promo:
        lines.append(f"  promotion  {promo.get('decision', '?')}: {promo.get('reason', '')}"
                     + (f" ({promo['timestamp']})" if promo.get("timestamp") else ""))
    means = {k: v for k, v in sorted((run.get("metrics") or {}).items()) if k.endswith("/mean")}
    if means:
        lines.append("  metrics    " + ", ".join(f"{k}={v:.4g}" for k, v in means.items()))
    params = run.get("params") or {}
    if params:
        shown = list(sorted(params.items()))[:12]
        lines.append("  params     " + ", ".join(f"{k}={v}" for k, v in shown)
                     + (f" (+{len(params) - len(shown)} more)" if len(params) > len(shown) else ""))
    return "\n".join(lines)
