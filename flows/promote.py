"""The ``promote`` flow: the evidence gate between ``challenger`` and ``champion``.

For each registered router, compare challenger and champion on the same held-out logs with
their paired DR difference and its confidence interval; move ``champion`` only when the
difference (``promote.rule: estimate``) or its lower bound (``bound``) is above 0, rows without
overlap counting as no difference (or there is no champion yet). The evidence is
written as model-version tags. Run: ``python -m flows.promote [params.yaml]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow, get_run_logger, task

from causal_router.pipeline import promotion
from causal_router.settings.params import load_settings

__all__ = ["main", "promote_flow"]

holdout_features = task(promotion.holdout_features)
support_features = task(promotion.support_features)
gate = task(promotion.gate, task_run_name="gate-{name}")
record = task(promotion.record_gate)  # the gate's own MLflow run, then the retention rule


@flow(name="causal-router-promote", log_prints=True)
def promote_flow(params_path: str = "params.yaml", root: str = ".", names: list | None = None) -> list:
    """Run the promotion gate for the interval router and every endpoint router."""
    from causal_router.registry.tracking import configure

    logger = get_run_logger()
    root_s = str(Path(root).resolve())
    p = load_settings(Path(root_s) / params_path)
    configure(root_s)  # a damaged store, or one that lost a champion, stops here (promotion.gate checks again)
    logs, X = holdout_features(root_s, p)
    support = support_features(root_s, p)
    decisions = []
    for name in names or promotion.router_names(p):
        d = gate(root_s, name, logs, X, p, support)
        logger.info(d.summary())
        decisions.append(d)
    record(root_s, decisions, p)
    return decisions


def main(argv: list | None = None) -> int:
    """``python -m flows.promote [params.yaml]``; a project error is one line on stderr and exit code 1."""
    from causal_router.pipeline import entry

    args = entry.parser("python -m flows.promote", __doc__.split("\n\n")[0]).parse_args(argv)
    rc, decisions = entry.run(lambda: promote_flow(args.params), args.params)
    for d in decisions or []:
        print(d.summary())
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
