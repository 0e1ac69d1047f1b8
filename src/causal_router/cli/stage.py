"""``causal-router stage NAME``: the pipeline stages configured by params.yaml (what dvc.yaml runs).

The arguments of each stage come from :class:`~causal_router.pipeline.plan.StagePlan`, as the
train flow's do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..evaluation.metrics import aiq_table
from ..pipeline.plan import StagePlan
from ..pipeline.stages import crossfit_stage, embed_stage, evaluate_stage, train_stage, validate_stage
from .common import CacheDir, Params, print_table

app = typer.Typer(name="stage", no_args_is_help=True,
                  help="Pipeline stages configured by params.yaml (what dvc.yaml runs).")


@app.command("validate")
def stage_validate(params: Path = Params):
    """Great Expectations checks of the logs: valid rows, quarantine and report under artifacts/validation."""
    out = validate_stage(**StagePlan.load(params).validate_args())
    typer.echo(f"validated: {', '.join(out)}")


@app.command("embed")
def stage_embed(params: Path = Params, cache_dir: Optional[Path] = CacheDir):
    """Embed the validated logs and the test table (artifacts/embeddings: a versioned DVC output)."""
    plan = StagePlan.load(params)
    out = embed_stage(plan.embed_inputs(), plan.layout.embeddings, **plan.embed_config(cache_dir))
    typer.echo(f"embedded: {', '.join(out)}")


@app.command("crossfit")
def stage_crossfit(params: Path = Params):
    """Cross-fit nuisances and build DR utilities (artifacts/crossfit)."""
    plan = StagePlan.load(params)
    crossfit_stage(plan.layout, **plan.crossfit_config())
    typer.echo(plan.layout.clip_report.read_text())


@app.command("train")
def stage_train(params: Path = Params):
    """Train every configured router on the lambda grid (artifacts/routers)."""
    plan = StagePlan.load(params)
    out = train_stage(plan.layout, plan.lambdas, plan.methods)
    typer.echo(f"trained -> {out}")


@app.command("evaluate")
def stage_evaluate(params: Path = Params):
    """Evaluate the routers on the full-feedback test table (artifacts/metrics.json, plots)."""
    plan = StagePlan.load(params)
    records = evaluate_stage(plan.layout, plan.test_table, plan.evaluate_lambdas)
    print_table(records, aiq_table(records))
