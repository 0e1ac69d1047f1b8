"""The ``promote`` flow: the evidence gate between ``challenger`` and ``champion``.

For each registered router, compare challenger and champion on the same held-out logs with
the DR policy value and its confidence interval; move ``champion`` only when the challenger's
lower bound beats the champion's estimate (or there is no champion yet). The evidence is
written as model-version tags. Run: ``python -m flows.promote [params.yaml]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow, get_run_logger, task

from causal_router.pipeline import stages
from causal_router.pipeline.params import load_params


@task
def holdout_features(root: str, p: dict):
    from causal_router.data.loaders import load_logs

    holdout = Path(root) / p["data"]["holdout"]
    logs = load_logs(holdout)
    emb_dir = Path(root) / p["artifacts"] / "embeddings"
    try:
        X = stages.load_embeddings(emb_dir, "holdout", logs["prompt_id"])
    except (FileNotFoundError, KeyError):  # holdout not embedded by the train flow: embed now
        from causal_router.features.embed import embed_texts

        X = embed_texts(logs["prompt"].astype(str).tolist())
    return logs, X


@task
def gate(root: str, name: str, logs, X, lambdas, alpha: float, clip: float):
    from causal_router.registry.promote import promote
    from causal_router.registry.tracking import configure

    configure(root)
    return promote(name, logs, X, lam=lambdas, alpha=alpha, clip=clip)


@flow(name="causal-router-promote", log_prints=True)
def promote_flow(params_path: str = "params.yaml", root: str = ".", names: list | None = None) -> list:
    """Run the promotion gate for the interval router and every endpoint router."""
    from causal_router.registry.runs import endpoint_name

    logger = get_run_logger()
    root_s = str(Path(root).resolve())
    p = load_params(Path(root_s) / params_path)
    names = names or ["causal-router-interval"] + [endpoint_name(lam) for lam in p["train"]["lambdas"]]
    logs, X = holdout_features(root_s, p)
    decisions = []
    for name in names:
        lambdas = p["promote"]["lambdas"] if name == "causal-router-interval" else None
        d = gate(root_s, name, logs, X, lambdas, p["promote"]["alpha"], p["crossfit"]["clip"])
        logger.info(d.summary())
        decisions.append(d)
    return decisions


if __name__ == "__main__":
    for d in promote_flow(*(sys.argv[1:2] or [])):
        print(d.summary())
