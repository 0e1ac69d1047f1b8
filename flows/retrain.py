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

from causal_router.pipeline.tasks import with_runner
from flows.promote import promote_flow
from flows.train import train_flow

__all__ = ["CRON", "ingest", "main", "retrain_flow"]

#: Nightly at 03:00 UTC unless CAUSAL_ROUTER_RETRAIN_CRON says otherwise.
CRON = os.environ.get("CAUSAL_ROUTER_RETRAIN_CRON", "0 3 * * *")


@task
def ingest(params_path: str = "params.yaml", root: str = ".") -> dict:
    """Append the decision log's new decisions with feedback to the logs (a no-op when there are none)."""
    from causal_router.serving.ingest import ingest as run
    from causal_router.serving.ingest import limits_for
    from causal_router.serving.store import DecisionStore, default_uri
    from causal_router.settings.params import load_settings

    root_p = Path(root).resolve()
    s = load_settings(root_p / params_path)
    report = run(DecisionStore(default_uri(root_p)), root_p / s.data.dir, s.ingest.holdout_fraction, root=root_p,
                 holdout_max_rows=s.ingest.holdout_max_rows, limits=limits_for(root_p, root_p / params_path),
                 reward_wait_s=s.ingest.reward_wait_s, change_z=s.ingest.change_z,
                 change_min_rows=s.ingest.change_min_rows)
    print(report.summary())
    return {"added": report.added, "quarantined": report.quarantined, "data_version": report.data_version}


@flow(name="causal-router-retrain", log_prints=True)
def retrain_flow(params_path: str = "params.yaml", root: str = ".") -> dict:
    ingested = ingest(params_path, root)
    # on $CAUSAL_ROUTER_TASK_RUNNER's runner (the stack's Dask cluster when a worker runs it)
    trained = with_runner(train_flow, str(Path(root) / params_path))(params_path, root)
    decisions = promote_flow(params_path, root)
    return {"ingested": ingested, "run_id": trained.get("run_id"), "decisions": [d.to_dict() for d in decisions]}


def main(argv: list | None = None) -> int:
    """``python -m flows.retrain [run|serve] [--params params.yaml]``."""
    from causal_router.pipeline import entry

    p = entry.parser("python -m flows.retrain", __doc__.split("\n\n")[0], params=False)
    p.add_argument("action", nargs="?", choices=("run", "serve"), default="run",
                   help="run: once, now (default); serve: on the cron schedule ($CAUSAL_ROUTER_RETRAIN_CRON)")
    p.add_argument("--params", default="params.yaml", help="pipeline parameters file (default: params.yaml)")
    args = p.parse_args(argv)
    if args.action == "serve":
        return entry.run(lambda: retrain_flow.serve(name="nightly-retrain", cron=CRON,
                                                    parameters={"params_path": args.params}), args.params)[0]
    rc, out = entry.run(lambda: retrain_flow(args.params), args.params)
    if rc == 0:
        print(entry.retrain_table(out))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
