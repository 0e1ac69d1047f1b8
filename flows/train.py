"""The ``train`` flow: validate, embed, cross-fit, train (fanned out over the lambda grid),
evaluate, record the outputs in dvc.lock, log to MLflow and register the routers as ``challenger``.
Registration comes last, after every stage and dvc.lock; it undoes itself if it fails (Ctrl-C and
SIGTERM included), and cleans up after a registration that was killed (``registry/recovery.py``).

Run: ``python -m flows.train [params.yaml]``. The stages are those ``dvc repro`` runs
(:mod:`causal_router.pipeline.stages`). Each stage caches on its parameters, the contents of its
input files and the hash of the package source it runs (:mod:`causal_router.pipeline.caching`), so
an interrupted run resumes without redoing finished stages, an edit to ``causal/`` or ``policy/``
recomputes what it affects, and a stage whose outputs went missing or were damaged reruns.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from causal_router.failpoints import failpoint
from causal_router.hashing import digest, hash_path
from causal_router.pipeline import stages
from causal_router.pipeline.caching import StageCode, output_hashes, outputs_intact
from causal_router.pipeline.layout import ArtifactLayout
from causal_router.pipeline.params import load_params


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
    from causal_router.causal.crossfit import fit_fold
    from causal_router.features.hardware import one_blas_thread

    with one_blas_thread():  # also in a Dask worker's process: the same bytes as a sequential crossfit
        return fit_fold(*job)


def _fold_tasks(fn, jobs):
    """Run the cross-fitting folds as tasks on the flow's task runner (a Dask cluster fans them out)."""
    return [f.result() for f in crossfit_fold.map(jobs)]


@task(**_cache("crossfit"))
def crossfit(root: str, digest: str, cfg: dict) -> dict:
    art = ArtifactLayout(Path(root))
    stages.crossfit_stage(art, fold_map=_fold_tasks, **cfg)
    failpoint("crossfit")
    return {"outputs": output_hashes(art.routing_data, art.crossfit_meta, art.clip_report)}


@task(**_cache("train"))
def endpoint(routing_data: str, digest: str, method: str, lam: float):
    import joblib

    from causal_router.policy.training import fit_endpoint

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
    import logging

    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def run_stage(stage_task, *args):
    """The stage's cached result, unless an output it recorded is missing or damaged: then rerun it."""
    result = stage_task(*args)
    if not outputs_intact(result["outputs"]):
        _logger().warning("%s: outputs missing or damaged, recomputing", stage_task.name)
        result = stage_task.with_options(refresh_cache=True)(*args)
    return result


@task
def dvc_commit(root: str, data_dir: str, validated_md5: str) -> bool:
    """Record the stage outputs in dvc.lock so ``dvc status`` reports the pipeline up to date, but
    only for the data the flow validated: if the data folder changed since, nothing is committed."""
    from causal_router.pipeline.dvc import commit

    now = hash_path(data_dir)
    if now != validated_md5:
        _logger().warning("%s changed while the flow ran (%s, validated %s): dvc.lock not updated",
                                 data_dir, now, validated_md5)
        return False
    committed = commit(root)
    failpoint("dvc_commit")
    return committed


@task(retries=2, retry_delay_seconds=2)  # the SQLite store can be briefly locked
def log_and_register(root: str, routers_dir: str, records: list, params: dict, data_paths: dict, plots: dict) -> dict:
    from mlflow import MlflowClient

    from causal_router.policy.routerset import RouterSet
    from causal_router.registry.lineage import collect_lineage
    from causal_router.registry.recovery import deferred_signals, recover_interrupted
    from causal_router.registry.runs import CHALLENGER, log_training_run, register_routers
    from causal_router.registry.tracking import configure

    configure(root)
    recover_interrupted()  # a run killed earlier (kill -9): FAILED, its orphan versions deleted
    tags = collect_lineage(root, data_paths)
    rs = RouterSet.load(routers_dir)
    logs = {s: Path(root, params["data"][s]) for s in ("train", "val")}
    # SIGTERM or Ctrl-C now stops at the next safe point (never inside a store write), undoing the
    # registration; one that lands after it completed stops the flow with the registration intact
    with deferred_signals():
        run_id = log_training_run(routers_dir, records, params, tags, rs.meta.get("clip_report"), plots,
                                  datasets={s: str(p) for s, p in logs.items() if p.exists()})
        try:
            # the data checks behind this run: expectations, failed rows, overlap per model
            for report in sorted(ArtifactLayout(Path(root, params["artifacts"])).validation.glob("*/report.json")):
                MlflowClient().log_artifact(run_id, str(report), f"validation/{report.parent.name}")
            versions = register_routers(run_id, routers_dir, rs.lambdas, alias=CHALLENGER,
                                        tags={**tags, "run_id": run_id})
        except BaseException:  # the run registered nothing (register_routers undid its part): FAILED
            MlflowClient().set_terminated(run_id, "FAILED")
            raise
    return {"run_id": run_id, "versions": versions}


@flow(name="causal-router-train", log_prints=True)
def train_flow(params_path: str = "params.yaml", root: str = ".", register: bool = True) -> dict:
    """Train on the logs named in ``params.yaml`` and register the routers as ``challenger``.

    One run at a time per artifact folder: a second flow waits for the first (a file lock), so two
    concurrent runs never interleave their writes.
    """
    from filelock import FileLock

    from causal_router.features.hardware import one_blas_thread

    root_p = Path(root).resolve()
    p = load_params(root_p / params_path)
    if register:  # a damaged or emptied tracking store stops the flow now, not after training
        from causal_router.registry.tracking import configure

        configure(root_p)
    art = ArtifactLayout.from_params(p, root_p)
    art.root.mkdir(parents=True, exist_ok=True)
    # BLAS on one thread for the whole run, set here in the flow's (main) thread so that every task
    # thread has it: the versioned outputs are then the same bytes as `dvc repro`'s on any machine
    with FileLock(str(art.lock)), one_blas_thread():
        return _train(root_p, p, art, register)


def _train(root_p: Path, p: dict, art: ArtifactLayout, register: bool) -> dict:
    from causal_router.policy.training import ENDPOINT_METHODS, check_methods

    logger = get_run_logger()
    d = {k: str(root_p / v) for k, v in p["data"].items() if v}  # data.eval_set may be null
    logs = {s: d[s] for s in stages.LOG_SPLITS if Path(d[s]).exists()}
    data_md5 = hash_path(d["dir"])  # the data validated: dvc.lock records nothing else
    v = p["validate"]
    # logged models must be in the price sheet that cross-fitting costs them with
    prices = str(root_p / p["crossfit"]["prices"]) if p["crossfit"].get("prices") else None
    eval_set = d["eval_set"] if Path(d.get("eval_set", "")).is_file() else None
    valid = run_stage(validate, logs, str(art.validation),
                      digest(*logs.values(), *(x for x in (prices, eval_set) if x)),
                      v["models"], v["positivity_floor"], v["warn"], prices, eval_set)["valid"]
    to_embed = {**valid, **({"test": d["test"]} if Path(d["test"]).exists() else {})}
    emb_cfg = {**p["embed"], "cache_dir": str(root_p / p["embed"]["cache_dir"]) if p["embed"]["cache_dir"] else None}
    run_stage(embed, to_embed, str(art.embeddings), digest(*to_embed.values()), emb_cfg)
    cf_cfg = {**p["crossfit"], "prices": str(root_p / p["crossfit"]["prices"]) if p["crossfit"]["prices"] else None}
    run_stage(crossfit, str(art.root), digest(art.valid("train"), art.valid("val"), art.embeddings,
                                             *([cf_cfg["prices"]] if cf_cfg["prices"] else []),
                                             *([valid["eval_set"]] if "eval_set" in valid else [])), cf_cfg)
    lambdas = [float(x) for x in p["train"]["lambdas"]]
    methods = check_methods(p["train"]["methods"])
    cf_digest = digest(art.routing_data)
    # torch's thread count is per process and the endpoint tasks share it: one thread for all of them
    # (as `dvc repro` trains), so that no task restores another's count mid-fit and the heads are
    # the same whichever way they were trained
    import torch

    torch.set_num_threads(1)
    futures = {m: endpoint.map(str(art.routing_data), cf_digest, m, lambdas) for m in methods if m in ENDPOINT_METHODS}
    endpoints = {m: [f.result() for f in fs] for m, fs in futures.items()}
    routers_dir = train(str(art.root), lambdas, methods, endpoints)
    records, plots = [], {}
    if "test" in to_embed:
        plots = {"utility": str(art.utility_plot), "frontier": str(art.frontier_plot)}
        records = evaluate(str(art.root), d["test"], [float(x) for x in p["evaluate"]["lambdas"]])
    result = {"routers": routers_dir, "records": records}
    # dvc.lock first: the lineage tags then read the very hashes it records
    result["dvc_committed"] = dvc_commit(str(root_p), d["dir"], data_md5)
    if register:
        result.update(log_and_register(str(root_p), routers_dir, records, p,
                                       {"logs": d["dir"], "embeddings": str(art.embeddings)}, plots))
        logger.info("registered %s as challenger (run %s)", result["versions"], result["run_id"])
    return result


def with_runner(flow_fn, params_path: str = "params.yaml"):
    """The flow on the task runner named by $CAUSAL_ROUTER_TASK_RUNNER or params.yaml's ``runner``
    (local threads, a local Dask cluster, or dask://HOST:PORT; see infra/dask.md)."""
    from causal_router.pipeline.runners import make_task_runner
    from causal_router.registry.tracking import task_runner_setting

    return flow_fn.with_options(task_runner=make_task_runner(task_runner_setting(load_params(params_path))))


def main(argv: list | None = None) -> int:
    """``python -m flows.train [params.yaml]``; a project error (a damaged tracking store, bad input)
    is one line on stderr and exit code 1."""
    from causal_router.errors import CausalRouterError
    from causal_router.pipeline.prefect_server import temporary_server
    from causal_router.registry.recovery import terminate_on_signals
    from causal_router.registry.tracking import configure

    params_path = (list(argv or [])[:1] or ["params.yaml"])[0]
    try:
        configure(".")  # before any Prefect run: a damaged store is one line, not a flow traceback
        # SIGTERM unwinds like Ctrl-C: the MLflow run ends FAILED, a half-done registration is undone;
        # the temporary Prefect server stops with this process, even after kill -9
        with terminate_on_signals(), temporary_server():
            out = with_runner(train_flow, params_path)(params_path)
    except CausalRouterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(stages.summary_table(out["records"]).round(4).to_string() if out["records"] else "no test table")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
