"""The train flow's Prefect tasks and its body; ``flows/train.py`` is a thin call into :func:`train_pipeline`.

validate, embed, cross-fit, train (fanned out over the lambda grid), evaluate, record the outputs in
dvc.lock, log to MLflow and register the routers as ``challenger``. Registration comes last, after
every stage and dvc.lock; it undoes itself if it fails (Ctrl-C and SIGTERM included), and cleans up
after a registration that was killed (``registry/recovery.py``).

Each stage task caches on its parameters (the arguments :class:`~causal_router.pipeline.plan.StagePlan`
maps params.yaml to), the contents of its input files (:func:`~causal_router.hashing.digest`,
DVC's hashes) and the hash of the package source it runs (:class:`~causal_router.pipeline.caching.StageCode`),
so an interrupted run resumes without redoing finished stages, an edit to ``causal/`` or ``policy/``
recomputes what it affects, and a stage whose outputs went missing or were damaged reruns. Each stage
prints one line with its wall time (and whether its cached result was used).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from datetime import timedelta
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from ..failpoints import failpoint
from ..hashing import digest, hash_path
from . import stages
from .caching import StageCode, output_hashes, outputs_intact
from .layout import ArtifactLayout
from .plan import StagePlan

__all__ = ["crossfit", "crossfit_fold", "dvc_commit", "embed", "endpoint", "evaluate", "log_and_register",
           "one_torch_thread", "run_stage", "say", "train", "train_pipeline", "validate", "with_runner"]


def _cache(stage: str) -> dict:
    return dict(cache_policy=INPUTS + TASK_SOURCE + StageCode(stage=stage), cache_expiration=timedelta(days=7),
                persist_result=True)


@task(retries=1, **_cache("validate"))
def validate(inputs: dict, out_dir: str, digest: str, models, floor: float, warn, prices=None, eval_set=None) -> dict:
    valid = stages.validate_stage(inputs, out_dir, models, floor, warn, prices=prices, eval_set=eval_set)
    failpoint("validate")  # tests of crash recovery: outputs written, result not yet recorded
    return {"valid": valid, "outputs": output_hashes(out_dir)}


@task(retries=2, retry_delay_seconds=5, **_cache("embed"))  # a retry helps with a busy cache folder
def embed(inputs: dict, out_dir: str, digest: str, cfg: dict) -> dict:
    stages.embed_stage(inputs, out_dir, **cfg)
    failpoint("embed")
    return {"outputs": output_hashes(out_dir)}


@task
def crossfit_fold(job: tuple):
    from ..causal.crossfit import fit_fold
    from ..features.hardware import one_blas_thread

    with one_blas_thread():  # also in a Dask worker's process: the same bytes as a sequential crossfit
        return fit_fold(*job)


def fold_tasks(fn, jobs):
    """Run the cross-fitting folds as tasks on the flow's task runner (a Dask cluster fans them out)."""
    return [f.result() for f in crossfit_fold.map(jobs)]


@task(**_cache("crossfit"))
def crossfit(root: str, digest: str, cfg: dict) -> dict:
    art = ArtifactLayout(Path(root))
    stages.crossfit_stage(art, fold_map=fold_tasks, **cfg)
    failpoint("crossfit")
    return {"outputs": output_hashes(art.routing_data, art.crossfit_meta, art.clip_report)}


@task(**_cache("train"))
def endpoint(routing_data: str, digest: str, method: str, lam: float):
    import joblib

    from ..policy.training import fit_endpoint

    fitted = fit_endpoint(joblib.load(routing_data), method, lam)
    failpoint("endpoint")
    return fitted


@task
def train(root: str, lambdas: list, methods, endpoints: dict) -> str:
    out = str(stages.train_stage(ArtifactLayout(Path(root)), lambdas, methods, endpoints=endpoints))
    failpoint("train")
    return out


@task
def evaluate(root: str, table: str, lambdas: list) -> list:
    records = stages.evaluate_stage(ArtifactLayout(Path(root)), table, lambdas)
    failpoint("evaluate")
    return records


def _logger():
    """The run's logger inside a flow, this module's outside one (a task called directly)."""
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def say(line: str) -> None:
    """One progress line on stdout (past Prefect's print capture, which a quiet log level hides)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def timed(stage: str, note=None):
    """Print ``stage`` with its wall time when the body ends; ``note`` (a one-item list) adds a word."""
    start = time.perf_counter()
    note = [] if note is None else note
    yield note
    say(f"{stage:<10} {time.perf_counter() - start:7.1f} s" + (f"  ({note[0]})" if note else ""))


def run_stage(stage_task, *args, note: list | None = None):
    """The stage's cached result, unless an output it recorded is missing or damaged: then rerun it.
    ``note`` gets "cached" when Prefect's cache answered."""
    state = stage_task(*args, return_state=True)
    result = state.result()
    if not outputs_intact(result["outputs"]):
        _logger().warning("%s: outputs missing or damaged, recomputing", stage_task.name)
        return stage_task.with_options(refresh_cache=True)(*args)
    if note is not None and state.name == "Cached":
        note.append("cached")
    return result


@task
def dvc_commit(root: str, data_dir: str, validated_md5: str) -> bool:
    """Record the stage outputs in dvc.lock so ``dvc status`` reports the pipeline up to date, but
    only for the data the flow validated: if the data folder changed since, nothing is committed."""
    from .dvc import commit

    now = hash_path(data_dir)
    if now != validated_md5:
        _logger().warning("%s changed while the flow ran (%s, validated %s): dvc.lock not updated",
                          data_dir, now, validated_md5)
        return False
    committed = commit(root)
    failpoint("dvc_commit")
    return committed


@task(retries=2, retry_delay_seconds=2)  # the SQLite store can be briefly locked
def log_and_register(root: str, routers_dir: str, records: list, params: dict, data_paths: dict, plots: dict,
                     logs: dict, reports: list) -> dict:
    """The training run (params, metrics, plots, the logs as datasets, the validation ``reports``), then
    the routers registered as ``challenger``; undone as a whole if interrupted."""
    from ..policy.routerset import RouterSet
    from ..registry.lineage import collect_lineage
    from ..registry.names import CHALLENGER
    from ..registry.recovery import deferred_signals, recover_interrupted
    from ..registry.runs import (
        log_files,
        log_training_run,
        mark_failed,
        register_routers,
        registration_skipped,
    )
    from ..registry.tracking import configure

    configure(root)
    recover_interrupted()  # a run killed earlier (kill -9): FAILED, its orphan versions deleted
    tags = collect_lineage(root, data_paths)
    rs = RouterSet.load(routers_dir)
    # SIGTERM or Ctrl-C now stops at the next safe point (never inside a store write), undoing the
    # registration; one that lands after it completed stops the flow with the registration intact
    with deferred_signals():
        run_id = log_training_run(routers_dir, records, params, tags, rs.meta.get("clip_report"), plots,
                                  datasets=logs)
        try:
            # the data checks behind this run: expectations, failed rows, overlap per model
            log_files(run_id, {f"validation/{Path(r).parent.name}": [r] for r in reports})
            versions = register_routers(run_id, routers_dir, rs.lambdas, alias=CHALLENGER,
                                        tags={**tags, "run_id": run_id})
        except BaseException:  # the run registered nothing (register_routers undid its part): FAILED
            mark_failed(run_id)
            raise
    return {"run_id": run_id, "versions": versions, "skipped": registration_skipped(run_id)}


def one_torch_thread() -> None:
    """torch on one thread from now on in this process. Its thread count is per process and the
    endpoint tasks share it: one thread for all of them (as ``dvc repro`` trains), so that no task
    restores another's count mid-fit and the heads are the same whichever way they were trained."""
    import torch

    torch.set_num_threads(1)


def train_pipeline(plan: StagePlan, register: bool = True) -> dict:
    """The train flow's body (call it inside a Prefect flow): every stage, dvc.lock, then registration.

    One run at a time per artifact folder: a second flow waits for the first (a file lock), so two
    concurrent runs never interleave their writes.
    """
    from filelock import FileLock

    from ..features.hardware import one_blas_thread

    if register:  # a damaged or emptied tracking store stops the flow now, not after training
        from ..registry.tracking import configure

        configure(plan.root)
    art = plan.layout
    art.root.mkdir(parents=True, exist_ok=True)
    # BLAS on one thread for the whole run, set here in the flow's (main) thread so that every task
    # thread has it: the versioned outputs are then the same bytes as `dvc repro`'s on any machine
    with FileLock(str(art.lock)), one_blas_thread():
        return _train(plan, art, register)


def _train(plan: StagePlan, art: ArtifactLayout, register: bool) -> dict:
    from ..policy.training import ENDPOINT_METHODS

    d = plan.data
    data_md5 = hash_path(d["dir"])  # the data validated: dvc.lock records nothing else
    v = plan.validate_args(existing=True)
    sources = [*v["inputs"].values(), *(x for x in (v["prices"], v["eval_set"]) if x)]
    with timed("validate") as note:
        valid = run_stage(validate, v["inputs"], v["out_dir"], digest(*sources), v["models"], v["positivity_floor"],
                          v["warn"], v["prices"], v["eval_set"], note=note)["valid"]
    to_embed = plan.embed_inputs(valid)
    with timed("embed") as note:
        run_stage(embed, to_embed, str(art.embeddings), digest(*to_embed.values()), plan.embed_config(), note=note)
    cf = plan.crossfit_config()
    with timed("crossfit") as note:
        run_stage(crossfit, str(art.root), digest(art.valid("train"), art.valid("val"), art.embeddings,
                                                  *([cf["prices"]] if cf["prices"] else []),
                                                  *([valid["eval_set"]] if "eval_set" in valid else [])),
                  cf, note=note)
    lambdas, methods = plan.lambdas, plan.methods
    cf_digest = digest(art.routing_data)
    one_torch_thread()
    with timed("train"):
        futures = {m: endpoint.map(str(art.routing_data), cf_digest, m, lambdas)
                   for m in methods if m in ENDPOINT_METHODS}
        endpoints = {m: [f.result() for f in fs] for m, fs in futures.items()}
        routers_dir = train(str(art.root), lambdas, methods, endpoints)
    records, plots = [], {}
    if "test" in to_embed:
        plots = {"utility": str(art.utility_plot), "frontier": str(art.frontier_plot)}
        with timed("evaluate"):
            records = evaluate(str(art.root), plan.test_table, plan.evaluate_lambdas)
    result = {"routers": routers_dir, "records": records}
    # dvc.lock first: the lineage tags then read the very hashes it records
    with timed("dvc.lock") as note:
        result["dvc_committed"] = dvc_commit(str(plan.root), d["dir"], data_md5)
        if not result["dvc_committed"]:
            note.append("not updated")
    if register:
        logs = {s: d[s] for s in ("train", "val") if Path(d[s]).exists()}
        reports = [str(r) for r in sorted(art.validation.glob("*/report.json"))]
        with timed("register") as note:
            result.update(log_and_register(str(plan.root), routers_dir, records, plan.settings.to_dict(),
                                           {"logs": d["dir"], "embeddings": str(art.embeddings)}, plots,
                                           logs, reports))
            note.append(("unchanged: no new version, challengers stay " if result.get("skipped") else "")
                        + f"{len(result['versions'])} challenger(s), run {result['run_id'][:8]}")
    return result


def with_runner(flow_fn, params_path: str | Path = "params.yaml"):
    """The flow on the task runner named by $CAUSAL_ROUTER_TASK_RUNNER or params.yaml's ``runner``
    (local threads, a local Dask cluster, or dask://HOST:PORT; see infra/dask.md)."""
    from ..settings.env import task_runner_setting
    from ..settings.params import load_settings
    from .runners import make_task_runner

    return flow_fn.with_options(task_runner=make_task_runner(task_runner_setting(load_settings(params_path).runner)))
