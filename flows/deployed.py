"""Deployment entry points (``infra/prefect.yaml``): the train flow on the task runner named by
``$CAUSAL_ROUTER_TASK_RUNNER`` (else params.yaml's ``runner``), resolved when the run starts, so
that a worker's runs fan their folds and embedding shards out to the stack's Dask cluster.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.train import train_flow, with_runner


@flow(name="causal-router-train-deployment", log_prints=True)
def train(params_path: str = "params.yaml", root: str = ".") -> dict:
    """``train_flow`` on the configured task runner (a subflow run)."""
    out = with_runner(train_flow, str(Path(root) / params_path))(params_path, root)
    return {k: v for k, v in out.items() if k in ("run_id", "versions", "routers", "dvc_committed")}


def main(argv: list | None = None) -> int:
    """``python -m flows.deployed [params.yaml]``: the deployment's train flow once, as a worker runs it."""
    from causal_router.pipeline import entry

    args = entry.parser("python -m flows.deployed", __doc__.split("\n\n")[0]).parse_args(argv)
    rc, out = entry.run(lambda: train(args.params), args.params)
    if out:
        print(out)
    return rc


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
