"""``causal-router stage NAME``: the pipeline stages configured by params.yaml (what dvc.yaml runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..evaluation.metrics import aiq_table
from ..pipeline.layout import ArtifactLayout
from ..pipeline.params import load_params
from ..pipeline.stages import LOG_SPLITS, crossfit_stage, embed_stage, evaluate_stage, train_stage, validate_stage
from .common import CacheDir, Params, print_table

app = typer.Typer(name="stage", no_args_is_help=True,
                  help="Pipeline stages configured by params.yaml (what dvc.yaml runs).")


def _stage_params(path: Path):
    p = load_params(path)
    return p, ArtifactLayout.from_params(p)


@app.command("validate")
def stage_validate(params: Path = Params):
    """Great Expectations checks of the logs: valid rows, quarantine and report under artifacts/validation."""
    p, art = _stage_params(params)
    v = p["validate"]
    out = validate_stage({s: p["data"][s] for s in LOG_SPLITS}, art.validation, v["models"],
                         v["positivity_floor"], v["warn"], prices=p["crossfit"].get("prices"),
                         eval_set=p["data"].get("eval_set"))
    typer.echo(f"validated: {', '.join(out)}")


@app.command("embed")
def stage_embed(params: Path = Params, cache_dir: Optional[Path] = CacheDir):
    """Embed the validated logs and the test table (artifacts/embeddings: a versioned DVC output)."""
    p, art = _stage_params(params)
    inputs = {s: art.valid(s) for s in (*LOG_SPLITS, "eval_set")}
    inputs["test"] = Path(p["data"]["test"])
    cfg = {**p["embed"], **({"cache_dir": cache_dir} if cache_dir else {})}
    out = embed_stage(inputs, art.embeddings, **cfg)
    typer.echo(f"embedded: {', '.join(out)}")


@app.command("crossfit")
def stage_crossfit(params: Path = Params):
    """Cross-fit nuisances and build DR utilities (artifacts/crossfit)."""
    p, art = _stage_params(params)
    crossfit_stage(art, **p["crossfit"])
    typer.echo(art.clip_report.read_text())


@app.command("train")
def stage_train(params: Path = Params):
    """Train every configured router on the lambda grid (artifacts/routers)."""
    p, art = _stage_params(params)
    out = train_stage(art, p["train"]["lambdas"], p["train"]["methods"])
    typer.echo(f"trained -> {out}")


@app.command("evaluate")
def stage_evaluate(params: Path = Params):
    """Evaluate the routers on the full-feedback test table (artifacts/metrics.json, plots)."""
    p, art = _stage_params(params)
    records = evaluate_stage(art, p["data"]["test"], p["evaluate"]["lambdas"])
    print_table(records, aiq_table(records))
