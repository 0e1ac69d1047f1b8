"""The ``train`` flow: validate, embed, cross-fit, train (fanned out over the lambda grid),
evaluate, log to MLflow and register the routers as ``challenger``.

Run: ``python -m flows.train [params.yaml]``. Each task caches on its inputs (file hashes and
parameters), so an interrupted run resumes without redoing finished stages.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from causal_router.pipeline import stages
from causal_router.pipeline.hashing import file_md5
from causal_router.pipeline.params import load_params

CACHE = dict(cache_policy=INPUTS + TASK_SOURCE, cache_expiration=timedelta(days=7), persist_result=True)


@task(retries=1, **CACHE)
def validate(inputs: dict, out_dir: str, digest: str, models, floor: float, warn) -> dict:
    return stages.validate_stage(inputs, out_dir, models, floor, warn)


@task(retries=2, retry_delay_seconds=5, **CACHE)  # a retry helps with a busy cache folder
def embed(inputs: dict, out_dir: str, digest: str, cfg: dict) -> dict:
    return stages.embed_stage(inputs, out_dir, **cfg)


@task
def crossfit_fold(job: tuple):
    from causal_router.causal.crossfit import fit_fold

    return fit_fold(*job)


def _fold_tasks(fn, jobs):
    """Run the cross-fitting folds as tasks on the flow's task runner (a Dask cluster fans them out)."""
    return [f.result() for f in crossfit_fold.map(jobs)]


@task(**CACHE)
def crossfit(train: str, val: str, emb_dir: str, out_dir: str, digest: str, cfg: dict) -> str:
    return str(stages.crossfit_stage(train, val, emb_dir, out_dir, fold_map=_fold_tasks, **cfg))


@task(**CACHE)
def endpoint(crossfit_dir: str, digest: str, method: str, lam: float):
    import joblib

    from causal_router.policy.fit import fit_endpoint, torch_threads

    data = joblib.load(Path(crossfit_dir) / "routing_data.joblib")
    with torch_threads(1):
        return fit_endpoint(data, method, lam)


@task
def assemble(crossfit_dir: str, out_dir: str, emb_dir: str, lambdas: list, methods, endpoints: dict) -> str:
    import joblib

    from causal_router.policy.fit import assemble_routers
    from causal_router.policy.routerset import RouterSet

    data = joblib.load(Path(crossfit_dir) / "routing_data.joblib")
    routers, seconds = assemble_routers(data, lambdas, methods, endpoints)
    meta = json.loads((Path(crossfit_dir) / "meta.json").read_text())
    meta.update(train_seconds=seconds, clip_report=data.clip_report.to_records())
    RouterSet(list(data.models), [float(x) for x in lambdas], routers, stages.encoder_key(emb_dir), meta).save(out_dir)
    return out_dir


@task
def evaluate(routers_dir: str, table: str, emb_dir: str, out: str, lambdas: list, plot: str) -> list:
    return stages.evaluate_stage(routers_dir, table, emb_dir, out, lambdas, plot)


@task(retries=2, retry_delay_seconds=2)  # the SQLite store can be briefly locked
def log_and_register(root: str, routers_dir: str, records: list, params: dict, data_paths: dict, plots: dict) -> dict:
    from causal_router.registry.lineage import collect_lineage
    from causal_router.registry.runs import log_training_run, register_routers
    from causal_router.registry.tracking import configure
    from causal_router.policy.routerset import RouterSet

    configure(root)
    tags = collect_lineage(root, data_paths)
    rs = RouterSet.load(routers_dir)
    run_id = log_training_run(routers_dir, records, params, tags, rs.meta.get("clip_report"), plots)
    from mlflow import MlflowClient

    # the data checks behind this run: expectations, failed rows, overlap per model
    for report in sorted(Path(root, params["artifacts"], "validation").glob("*/report.json")):
        MlflowClient().log_artifact(run_id, str(report), f"validation/{report.parent.name}")
    versions = register_routers(run_id, routers_dir, rs.lambdas, alias="challenger", tags={**tags, "run_id": run_id})
    return {"run_id": run_id, "versions": versions}


@task
def dvc_commit(root: str) -> bool:
    """Record the stage outputs in dvc.lock so ``dvc status`` reports the pipeline up to date."""
    from causal_router.pipeline.dvc import commit

    return commit(root)


@flow(name="causal-router-train", log_prints=True)
def train_flow(params_path: str = "params.yaml", root: str = ".", register: bool = True) -> dict:
    """Train on the logs named in ``params.yaml`` and register the routers as ``challenger``."""
    logger = get_run_logger()
    root_p = Path(root).resolve()
    p = load_params(root_p / params_path)
    art = root_p / p["artifacts"]
    d = {k: str(root_p / v) for k, v in p["data"].items()}
    logs = {s: d[s] for s in stages.LOG_SPLITS if Path(d[s]).exists()}
    valid = validate(logs, str(art / "validation"), file_md5(*logs.values()), p["validate"]["models"],
                     p["validate"]["positivity_floor"], p["validate"]["warn"])
    to_embed = {**valid, **({"test": d["test"]} if Path(d["test"]).exists() else {})}
    emb_dir = str(art / "embeddings")
    emb_cfg = {**p["embed"], "cache_dir": str(root_p / p["embed"]["cache_dir"]) if p["embed"]["cache_dir"] else None}
    embed(to_embed, emb_dir, file_md5(*to_embed.values()), emb_cfg)
    cf_dir = crossfit(valid["train"], valid["val"], emb_dir, str(art / "crossfit"),
                      file_md5(valid["train"], valid["val"], f"{emb_dir}/train.npy", f"{emb_dir}/val.npy"),
                      p["crossfit"])
    lambdas = [float(x) for x in p["train"]["lambdas"]]
    from causal_router.policy.fit import DEFAULT_METHODS, ENDPOINT_METHODS

    methods = p["train"]["methods"] or list(DEFAULT_METHODS)
    cf_digest = file_md5(f"{cf_dir}/routing_data.joblib")
    futures = {m: endpoint.map(cf_dir, cf_digest, m, lambdas) for m in methods if m in ENDPOINT_METHODS}
    endpoints = {m: [f.result() for f in fs] for m, fs in futures.items()}
    routers_dir = assemble(cf_dir, str(art / "routers"), emb_dir, lambdas, methods, endpoints)
    records, plots = [], {}
    if "test" in to_embed:
        plots = {"utility": str(art / "plots" / "utility.png"), "frontier": str(art / "plots" / "frontier.png")}
        records = evaluate(routers_dir, d["test"], emb_dir, str(art / "metrics.json"),
                           [float(x) for x in p["evaluate"]["lambdas"]], plots["utility"])
    result = {"routers": routers_dir, "records": records}
    if register:
        result.update(log_and_register(str(root_p), routers_dir, records, p,
                                       {"logs": d["dir"], "embeddings": emb_dir}, plots))
        logger.info("registered %s as challenger (run %s)", result["versions"], result["run_id"])
    result["dvc_committed"] = dvc_commit(str(root_p))
    return result


def with_runner(flow_fn, params_path: str = "params.yaml"):
    """The flow on the task runner named by $CAUSAL_ROUTER_TASK_RUNNER or params.yaml's ``runner``
    (local threads, a local Dask cluster, or dask://HOST:PORT; see infra/dask.md)."""
    import os

    from causal_router.pipeline.runners import make_task_runner

    setting = os.environ.get("CAUSAL_ROUTER_TASK_RUNNER") or load_params(params_path).get("runner")
    return flow_fn.with_options(task_runner=make_task_runner(setting))


if __name__ == "__main__":
    params_path = (sys.argv[1:2] or ["params.yaml"])[0]
    out = with_runner(train_flow, params_path)(params_path)
    print(stages.summary_table(out["records"]).round(4).to_string() if out["records"] else "no test table")
