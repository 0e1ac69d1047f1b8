"""A training run in MLflow, and its routers registered as ``challenger``.

:func:`log_training_run` records one training: parameters, per-lambda regret curves as
metrics (the step is the lambda), the evaluation records, the clipping/overlap report and
plots. :func:`register_routers` then logs the run's router set as pyfunc models and registers

- ``causal-router-endpoint-<lam>`` for each grid lambda (RM-Softmax at that lambda), and
- ``causal-router-interval`` (the interval router, any lambda in the grid's range),

each new version carrying the alias ``challenger`` and the given tags (lineage). When those tags
record the data's hashes, the versions also carry ``lineage.content_hash`` (data, code and params:
:func:`~causal_router.registry.lineage.content_hash`), and a registration whose hash the newest
version of every name already carries (with the alias) registers nothing: it says so in one line
and returns those versions. Promotion to
``champion`` is :func:`causal_router.registry.promote.promote`'s decision, never this module's.

Registration is all or nothing: every model is logged first, then every version created, then
every alias moved; an exception, Ctrl-C or SIGTERM (under
:func:`~causal_router.registry.recovery.terminate_on_signals`) on the way puts the aliases back,
deletes the new versions and ends the run FAILED. Runs carry ``causal_router.kind=training`` and
the host and pid holding them, so that :func:`~causal_router.registry.recovery.recover_interrupted`
can clean up after a ``kill -9``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import mlflow

from ..failpoints import failpoint
from ..jsonable import jsonable
from ..policy.routerset import MANIFEST, RouterSet
from . import integrity
from .lineage import CONTENT_TAG, content_hash
from .names import (
    CHALLENGER,
    INTERVAL_NAME,
    MAX_PARAM_VALUE,
    MAX_TAG_VALUE,
    endpoint_name,
    flatten_params,
    format_lambda,
    newest_version,
)
from .names import key as _key
from .names import truncate as _truncate
from .pyfunc import ENDPOINT_METHOD, INTERVAL_METHOD, default_lambda, log_router_model
from .recovery import checkpoint
from .tracking import client as _client
from .tracking import ensure_configured

log = logging.getLogger(__name__)

METRICS = ("utility", "regret", "accuracy", "cost")


def metric_batches(records: list[dict]) -> list[tuple[str, float, int]]:
    """Evaluation records -> ``(key, value, step)``: ``{metric}/{method}`` at ``step=round(lambda)``
    and ``{metric}/{method}/mean`` (mean over lambdas, step 0). Missing or non-finite values are skipped."""
    rows: list[tuple[str, float, int]] = []
    per: dict[str, list[float]] = defaultdict(list)
    for r in records:
        method, lam = r.get("method"), r.get("lambda")
        if method is None or lam is None:
            raise ValueError(f"evaluation record lacks 'method' or 'lambda': {r}")
        step = int(round(float(lam)))
        for m in METRICS:
            v = r.get(m)
            if v is None or not math.isfinite(float(v)):
                continue
            key = _key(f"{m}/{method}")
            rows.append((key, float(v), step))
            per[key].append(float(v))
    rows += [(_key(f"{k}/mean"), sum(v) / len(v), 0) for k, v in per.items()]
    return rows


def log_training_run(routerset_dir, records: list[dict], params: dict | None = None, tags: dict | None = None,
                     clip_report: list[dict] | None = None, plots: dict | None = None,
                     run_name: str | None = None, datasets: dict | None = None) -> str:
    """Record a training run; returns its run id.

    Parameters
    ----------
    routerset_dir : path of the saved :class:`RouterSet` (its manifest is logged as an artifact;
        its ``meta["train_seconds"]`` become ``train_seconds/<method>`` metrics)
    records : list of dict
        Evaluation records ``{method, lambda, utility, regret, accuracy, cost}`` (docs/architecture.md,
        Method step 5); logged as metrics ``{metric}/{method}`` with ``step=round(lambda)``, their means
        over lambdas as ``{metric}/{method}/mean``, and whole as ``evaluation/records.json``.
    params : dict
        Training parameters (nested dicts flattened to ``a.b``; values stringified and truncated).
    tags : dict
        Run tags (e.g. :func:`causal_router.registry.lineage.collect_lineage`).
    clip_report : list of dict or None
        Clipping/overlap report (default: the router set's ``meta["clip_report"]``), logged as
        ``diagnostics/clip_report.json``.
    plots : dict name -> path of a PNG, or None
        Logged as ``plots/<name>.png``.
    run_name : str or None
    datasets : dict name -> path of a log file, or None
        The logs the routers were trained on, recorded with ``mlflow.log_input`` (context ``training``).

    Returns
    -------
    str : the run id (the run is ended; nested under the active run if there is one)
    """
    ensure_configured()
    rs_dir = Path(routerset_dir)
    rs = RouterSet.load(rs_dir)
    if clip_report is None:
        clip_report = rs.meta.get("clip_report")
    plots = {str(k): Path(v) for k, v in (plots or {}).items()}
    for name, p in plots.items():
        if not p.is_file():
            raise FileNotFoundError(f"plot {name!r} not found at {p}")
    c = _client()
    with mlflow.start_run(run_name=run_name, nested=mlflow.active_run() is not None,
                          tags={"causal_router.kind": "training", **process_tags()}) as run:
        run_id = run.info.run_id
        from mlflow.entities import Metric, Param, RunTag

        base = {"routers.models": ",".join(rs.models),
                "routers.lambdas": ",".join(format(float(x), "g") for x in rs.lambdas),
                "routers.methods": ",".join(rs.routers), "routers.encoder_key": rs.encoder_key}
        flat = {**{k: _truncate(v, MAX_PARAM_VALUE) for k, v in base.items()}, **flatten_params(params or {})}
        all_tags = {_key(k): _truncate(v, MAX_TAG_VALUE) for k, v in (tags or {}).items()}
        ts = int(time.time() * 1000)
        metrics = [Metric(k, v, ts, s) for k, v, s in metric_batches(records or [])]
        for method, sec in (rs.meta.get("train_seconds") or {}).items():
            metrics.append(Metric(_key(f"train_seconds/{method}"), float(sec), ts, 0))
        c.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in flat.items()],
                    tags=[RunTag(k, v) for k, v in all_tags.items()])
        mlflow.log_dict(jsonable(list(records or [])), "evaluation/records.json")
        if datasets:
            from .lifecycle import log_dataset

            for name, path in datasets.items():
                log_dataset(path, name, context="training")
        if clip_report is not None:
            mlflow.log_dict(jsonable(clip_report), "diagnostics/clip_report.json")
        if (rs_dir / MANIFEST).exists():
            mlflow.log_artifact(str(rs_dir / MANIFEST), "routerset")
        with tempfile.TemporaryDirectory() as tmp:
            for name, p in plots.items():  # stored as plots/<name><suffix>
                target = Path(tmp) / f"{_key(name)}{p.suffix}"
                shutil.copyfile(p, target)
                mlflow.log_artifact(str(target), "plots")
    return run_id


def register_routers(run_id: str, routerset_dir, lambdas=None, alias: str = CHALLENGER, tags: dict | None = None,
                     encoder_path: str | None = None) -> dict[str, str]:
    """Log the router set's endpoint and interval routers in run ``run_id`` and register them.

    Parameters
    ----------
    run_id : str
        The training run (from :func:`log_training_run`); the models are logged into it.
    routerset_dir : path of the saved :class:`RouterSet`
    lambdas : sequence of float or None
        Grid lambdas to register endpoint models for (default: the set's whole grid); each must
        be on the grid.
    alias : str
        Alias set on every new version (default ``challenger``).
    tags : dict or None
        Copied onto every new model version (e.g. lineage: git commit, data hashes).
    encoder_path : str or None
        Local encoder folder the models embed prompts with (None: the default encoder).

    Returns
    -------
    dict registered name -> new version (str); the existing versions when nothing changed (the same
    content hash of data, code and params as the newest version of each name, which holds ``alias``)
    """
    ensure_configured()
    rs = RouterSet.load(routerset_dir)
    grid = [float(x) for x in rs.lambdas]
    lambdas = grid if lambdas is None else [float(x) for x in lambdas]
    off = [x for x in lambdas if not any(math.isclose(x, g, rel_tol=1e-9, abs_tol=1e-12) for g in grid)]
    if off:
        raise ValueError(f"lambdas {off} are not on the router set's grid {grid}")
    plan = []  # (registered name, logged model name, method, lam)
    if ENDPOINT_METHOD in rs.routers:
        plan += [(endpoint_name(x), f"endpoint-{format_lambda(x)}", ENDPOINT_METHOD, x) for x in lambdas]
    else:
        log.warning("router set has no %r router: no endpoint models registered", ENDPOINT_METHOD)
    if INTERVAL_METHOD in rs.routers:
        plan.append((INTERVAL_NAME, "interval", INTERVAL_METHOD, None))
    else:
        log.warning("router set has no %r router: no interval model registered", INTERVAL_METHOD)
    if not plan:
        raise ValueError(f"router set at {routerset_dir} has neither {ENDPOINT_METHOD!r} nor {INTERVAL_METHOD!r}")
    c = _client()
    version_tags = {_key(k): _truncate(v, MAX_TAG_VALUE) for k, v in (tags or {}).items()}
    # the same data, code and params as the newest versions: nothing new to register
    content = content_hash(tags or {}, lambda: c.get_run(run_id).data.params, encoder_path=encoder_path or "")
    if content is not None:
        same = _identical(c, [reg_name for reg_name, *_ in plan], content, alias)
        if same:
            log.warning("unchanged data, code and params (content hash %s): not registered again; the newest "
                        "versions stay %s", content[:12], ", ".join(f"{n} v{v}" for n, v in same.items()))
            c.set_tag(run_id, SKIPPED_TAG, json.dumps(same))
            return same
        version_tags[CONTENT_TAG] = content
    versions: dict[str, str] = {}
    moved: dict[str, str | None] = {}  # alias moves done: name -> the version it pointed to before
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        ctx = contextlib.nullcontext()
    else:
        ctx = mlflow.start_run(run_id=run_id, nested=active is not None)
    with ctx:
        mlflow.set_tags(process_tags())  # who holds the run while it is RUNNING (recovery.py)
        earlier = _run_versions(c, run_id)  # an earlier registration of the same run: never undone
        try:
            # 1. every model's artifacts, 2. every version, 3. every alias: a failure at any point
            # leaves no version behind and every alias where it was
            infos = []
            for _, model_name, method, lam in plan:
                checkpoint()  # a signal under recovery.deferred_signals stops here, between store operations
                infos.append(log_router_model(routerset_dir, model_name, method, lam, encoder_path=encoder_path))
            checkpoint()
            failpoint("register:models")
            previous = {reg_name: _alias_version(c, reg_name, alias) for reg_name, *_ in plan}
            mlflow.set_tag(PREVIOUS_TAG, json.dumps({"alias": alias, "versions": previous}))
            for (reg_name, _, method, lam), info in zip(plan, infos):
                checkpoint()
                with contextlib.redirect_stderr(io.StringIO()) as said:  # "Successfully registered ..."
                    version = str(mlflow.register_model(info.model_uri, reg_name).version)
                log.debug("%s", said.getvalue().strip())
                versions[reg_name] = version
                cfg_lam = default_lambda(rs.lambdas, method, lam)
                auto = {"router.method": method, "router.kind": "endpoint" if lam is not None else "interval",
                        "router.lambda": format(cfg_lam, "g"),
                        "router.lambda_grid": ",".join(format(g, "g") for g in grid),
                        "router.models": ",".join(rs.models), "router.encoder_key": rs.encoder_key,
                        "router.model_id": getattr(info, "model_id", "") or ""}
                for k, v in {**auto, **version_tags}.items():
                    c.set_model_version_tag(reg_name, version, k, v)
            failpoint("register:versions")
            checkpoint()  # the last one: the aliases move together,
            # under the store's promotion lock: never interleaved with another registration's or a gate's
            with integrity.promotion_lock(getattr(c, "_registry_uri", None) or ensure_configured()):
                for reg_name, version in versions.items():
                    moved[reg_name] = previous[reg_name]
                    c.set_registered_model_alias(reg_name, alias, version)
            failpoint("register:aliases")
        except BaseException:  # an error, Ctrl-C or SIGTERM (recovery.terminate_on_signals): undo, then fail
            _undo_registration(c, run_id, alias, versions, moved, earlier)
            raise
    from .lifecycle import describe_models

    describe_models(versions, c)
    return versions


PREVIOUS_TAG = "registration.previous"
#: Run tag of a registration skipped because nothing changed: ``{name: the existing version}``.
SKIPPED_TAG = "registration.skipped_identical"


def registration_skipped(run_id: str, client=None) -> bool:
    """Whether :func:`register_routers` skipped run ``run_id``'s registration (an unchanged retrain)."""
    return SKIPPED_TAG in (client or _client()).get_run(run_id).data.tags


def _identical(c, names: list, content: str, alias: str) -> dict[str, str] | None:
    """``{name: version}`` when the newest version of every name carries ``content`` and ``alias``, else None."""
    out = {}
    for name in names:
        mv = newest_version(c, name)
        if mv is None or (mv.tags or {}).get(CONTENT_TAG) != content or _alias_version(c, name, alias) != str(
                mv.version):
            return None
        out[name] = str(mv.version)
    return out


def process_tags() -> dict[str, str]:
    """Run tags naming the process that holds the run (host, pid), read by :mod:`.recovery`."""
    import os
    import socket

    return {"causal_router.host": socket.gethostname(), "causal_router.pid": str(os.getpid())}


def _alias_version(c, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(c.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _run_versions(c, run_id: str) -> set:
    return {(mv.name, str(mv.version)) for mv in c.search_model_versions(f"run_id = '{run_id}'")}


def _undo_registration(c, run_id: str, alias: str, versions: dict, moved: dict, earlier: set) -> None:
    """Aliases back where they were, then the run's new versions deleted (best effort: each step logged).
    The store is asked for the run's versions too: a signal may land after a version was created and
    before its number reached ``versions``."""
    pairs = {(name, str(version)) for name, version in versions.items()}
    try:
        pairs |= _run_versions(c, run_id)
    except Exception:
        log.exception("could not list the versions of run %s", run_id)
    for name, before in moved.items():
        try:
            if before is None:
                c.delete_registered_model_alias(name, alias)
            else:
                c.set_registered_model_alias(name, alias, before)
        except Exception:
            log.exception("could not restore alias %s of %s to v%s", alias, name, before)
    for name, version in sorted(pairs - earlier):
        try:
            c.delete_model_version(name, version)
            log.warning("registration failed: deleted %s v%s", name, version)
        except Exception:
            log.exception("could not delete %s v%s of a failed registration", name, version)


def log_files(run_id: str, files: dict[str, list]) -> None:
    """Log files into run ``run_id``: ``{artifact folder: [paths]}`` (e.g. the validation reports)."""
    c = _client()
    for folder, paths in files.items():
        for path in paths:
            c.log_artifact(run_id, str(path), folder)


def mark_failed(run_id: str) -> None:
    """End run ``run_id`` as FAILED (a registration that undid itself)."""
    _client().set_terminated(run_id, "FAILED")
