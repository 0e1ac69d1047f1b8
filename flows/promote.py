"""The ``promote`` flow: the evidence gate between ``challenger`` and ``champion``.

For each registered router, compare challenger and champion on the same held-out logs with
their paired DR difference and its confidence interval; move ``champion`` only when the
difference's lower bound is above 0 (or there is no champion yet). The evidence is
written as model-version tags. Run: ``python -m flows.promote [params.yaml]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow, get_run_logger, task

from causal_router.pipeline import promotion
from causal_router.pipeline.params import load_params

holdout_features = task(promotion.holdout_features)
gate = task(promotion.gate, task_run_name="gate-{name}")
record = task(promotion.record_gate)  # the gate's own MLflow run, then the retention rule


@flow(name="causal-router-promote", log_prints=True)
def promote_flow(params_path: str = "params.yaml", root: str = ".", names: list | None = None) -> list:
    """Run the promotion gate for the interval router and every endpoint router."""
    logger = get_run_logger()
    root_s = str(Path(root).resolve())
    p = load_params(Path(root_s) / params_path)
    logs, X = holdout_features(root_s, p)
    decisions = []
    for name in names or promotion.router_names(p):
        d = gate(root_s, name, logs, X, p)
        logger.info(d.summary())
        decisions.append(d)
    record(root_s, decisions, p)
    return decisions


if __name__ == "__main__":
    for d in promote_flow(*(sys.argv[1:2] or [])):
        print(d.summary())
