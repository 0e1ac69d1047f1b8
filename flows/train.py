"""The ``train`` flow: validate, embed, cross-fit, train (fanned out over the lambda grid),
evaluate, record the outputs in dvc.lock, log to MLflow and register the routers as ``challenger``
(:mod:`causal_router.pipeline.tasks`; the stages are those ``dvc repro`` runs, with the arguments
:mod:`causal_router.pipeline.plan` maps params.yaml to).

Run: ``python -m flows.train [params.yaml]`` (``--help``: usage; a missing params file is an error).
"""

from __future__ import annotations

import sys

from prefect import flow

from causal_router.pipeline.plan import StagePlan
from causal_router.pipeline.tasks import train_pipeline, with_runner

__all__ = ["main", "train_flow", "with_runner"]


@flow(name="causal-router-train", log_prints=True)
def train_flow(params_path: str = "params.yaml", root: str = ".", register_models: bool = True) -> dict:
    """Train on the logs named in ``params.yaml`` and register the routers as ``challenger``
    (``register_models=False``: stop after dvc.lock)."""
    return train_pipeline(StagePlan.load(params_path, root, resolve=True), register_models)


def main(argv: list | None = None) -> int:
    """``python -m flows.train [params.yaml]``; a project error is one line on stderr and exit code 1."""
    from causal_router.pipeline import entry
    from causal_router.pipeline.stages import summary_table

    args = entry.parser("python -m flows.train", __doc__.split("\n\n")[0]).parse_args(argv)
    rc, out = entry.run(lambda: with_runner(train_flow, args.params)(args.params), args.params, signals=True)
    if rc == 0:
        print(summary_table(out["records"]).round(4).to_string() if out["records"] else "no test table")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
