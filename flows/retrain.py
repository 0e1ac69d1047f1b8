"""Scheduled retraining that closes the loop: ingest the service's decisions, retrain, run the gate.

``ingest`` turns the decisions of ``causal-router serve`` that got feedback into log rows (the
newest slice becomes the holdout the gate scores), ``train`` retrains on the grown logs and
``promote`` moves ``champion`` only on evidence; the service picks the new champion up by
itself. ``python -m flows.retrain serve`` serves the deployment on its cron schedule (the same
one ``infra/prefect.yaml`` declares for a Prefect server); ``python -m flows.retrain`` runs it once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from prefect import flow, task

from flows.promote import promote_flow
from flows.train import train_flow

#: Nightly at 03:00 UTC unless CAUSAL_ROUTER_RETRAIN_CRON says otherwise.
CRON = os.environ.get("CAUSAL_ROUTER_RETRAIN_CRON", "0 3 * * *")


@task
def ingest(params_path: str = "params.yaml", root: str = ".") -> dict:
    """Append the decision log's new decisions with feedback to the logs (a no-op when there are none)."""
    from causal_router.pipeline.params import load_params
    from causal_router.serving.ingest import ingest as run
    from causal_router.serving.store import DecisionStore, default_uri

    root_p = Path(root).resolve()
    p = load_params(root_p / params_path)
    data_dir = root_p / p["data"]["dir"]
    cfg = p.get("ingest") or {}
    report = run(DecisionStore(default_uri(root_p)), data_dir, float(cfg.get("holdout_fraction", 0.2)), root=root_p,
                 holdout_max_rows=cfg.get("holdout_max_rows"))
    print(report.summary())
    return {"added": report.added, "quarantined": report.quarantined, "data_version": report.data_version}


@flow(name="causal-router-retrain", log_prints=True)
def retrain_flow(params_path: str = "params.yaml", root: str = ".") -> dict:
    from flows.train import with_runner

    ingested = ingest(params_path, root)
    # on $CAUSAL_ROUTER_TASK_RUNNER's runner (the stack's Dask cluster when a worker runs it)
    trained = with_runner(train_flow, str(Path(root) / params_path))(params_path, root)
    decisions = promote_flow(params_path, root)
    return {"ingested": ingested, "run_id": trained.get("run_id"), "decisions": [d.to_dict() for d in decisions]}


if __name__ == "__main__":
    from causal_router.pipeline.prefect_server import temporary_server

    with temporary_server():  # without PREFECT_API_URL: stops with this process, even after kill -9
        if sys.argv[1:2] == ["serve"]:
            retrain_flow.serve(name="nightly-retrain", cron=CRON)
        else:
            print(retrain_flow())
