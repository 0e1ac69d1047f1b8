"""Scheduled retraining: pick up the current logs, retrain, then run the promotion gate.

``python -m flows.retrain serve`` serves the deployment on its cron schedule (the same one
``infra/prefect.yaml`` declares for a Prefect server); ``python -m flows.retrain`` runs it once.
"""

from __future__ import annotations

import os
import sys

from prefect import flow

from flows.promote import promote_flow
from flows.train import train_flow

#: Nightly at 03:00 UTC unless CAUSAL_ROUTER_RETRAIN_CRON says otherwise.
CRON = os.environ.get("CAUSAL_ROUTER_RETRAIN_CRON", "0 3 * * *")


@flow(name="causal-router-retrain", log_prints=True)
def retrain_flow(params_path: str = "params.yaml", root: str = ".") -> dict:
    trained = train_flow(params_path, root)
    decisions = promote_flow(params_path, root)
    return {"run_id": trained.get("run_id"), "decisions": [d.to_dict() for d in decisions]}


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        retrain_flow.serve(name="nightly-retrain", cron=CRON)
    else:
        print(retrain_flow())
