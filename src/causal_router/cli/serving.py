"""Commands of the service: ``serve``, ``ingest``."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Optional

import typer

from ..serving.ingest import ingest as run_ingest
from ..serving.model import parse_model_uri
from ..serving.settings import ServeSettings
from ..serving.store import DecisionStore, default_uri
from ..settings.env import find_project_root
from ..settings.params import IngestSettings
from .common import fail

app = typer.Typer()
_INGEST = IngestSettings()  # params.yaml's ingest defaults


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    model_uri: str = typer.Option(ServeSettings().model_uri, "--model-uri",
                                  help="Registered router: models:/NAME@ALIAS (reloaded when the alias moves) "
                                  "or models:/NAME/VERSION."),
    workers: int = typer.Option(1, help="uvicorn worker processes (each loads the model)."),
    params: Optional[Path] = typer.Option(None, "--params", help="Pipeline parameters, the serve section "
                                          "(default: the project's params.yaml; a missing file is an error)."),
    gateway: Optional[Path] = typer.Option(None, "--gateway", help="LiteLLM model_list file (serve.gateway): also "
                                           "serve POST /v1/chat/completions, call the chosen model, record its cost."),
    budget: Optional[float] = typer.Option(None, "--budget", help="Target mean cost, USD per decision (serve.budget): "
                                           "the service sets lambda itself; a request's lam overrides it."),
    budget_calibration: Optional[Path] = typer.Option(
        None, "--budget-calibration", help="The `causal-router calibrate --out` file: its lambda is the "
        "controller's cold start."),
):
    """Serve the router over HTTP (OpenAPI docs at /docs): POST /v1/route explores and logs every
    decision with its propensity, POST /v1/feedback records outcomes (see README). Runs from any
    folder inside the project: its registry (mlruns/), decision log (decisions/) and params.yaml."""
    from ..serving.api import serve as run  # fastapi and uvicorn: only to serve

    if workers < 1:
        fail(f"--workers must be at least 1, got {workers}")
    if budget is not None and not (math.isfinite(budget) and budget > 0):
        fail(f"--budget must be a finite number of USD per decision > 0, got {budget!r}")
    if budget_calibration is not None:
        from ..serving.budget import calibrated_lam

        try:
            calibrated_lam(budget_calibration)
        except ValueError as err:
            fail(f"--budget-calibration {err}")
    root = find_project_root() or Path.cwd()
    try:
        parse_model_uri(model_uri)
        settings = ServeSettings.from_params(params or root / "params.yaml", model_uri=model_uri, root=str(root),
                                             gateway=str(gateway.resolve()) if gateway else None, budget=budget,
                                             budget_calibration=str(budget_calibration.resolve())
                                             if budget_calibration else None)
    except (ValueError, TypeError) as err:
        fail(str(err))
    try:
        run(settings, host=host, port=port, workers=workers)
    except Exception as err:  # a model that cannot be loaded, an unreachable store: say what
        logging.getLogger("causal_router").debug("serve failed", exc_info=True)
        fail(f"cannot serve {model_uri}: {err}")


@app.command()
def ingest(
    store: Optional[str] = typer.Option(None, "--store", help="Decision log URI (default: "
                                        "$CAUSAL_ROUTER_DECISIONS_URI, else sqlite:///decisions/decisions.db)."),
    data_dir: Path = typer.Option(Path("data"), "--data-dir", help="Logs folder (train.parquet, holdout.parquet)."),
    holdout_fraction: float = typer.Option(_INGEST.holdout_fraction, "--holdout-fraction",
                                           help="Share of the newest ingested rows that joins the holdout."),
    holdout_max_rows: Optional[int] = typer.Option(_INGEST.holdout_max_rows, "--holdout-max-rows",
                                                   help="The holdout accumulates up to this many rows, the oldest "
                                                   "then train (0: each ingest's slice replaces it)."),
    reward_wait_s: float = typer.Option(_INGEST.reward_wait_s, "--reward-wait-s", min=0.0,
                                        help="An answered gateway decision without feedback this long is logged "
                                        "to no_feedback.parquet (feedback_missing), not trained on."),
):
    """Turn served decisions that got feedback into log rows (validated, appended by time, newest
    slice as the holdout) and record the data version with DVC; a second run adds nothing."""
    try:
        report = run_ingest(DecisionStore(store or default_uri()), data_dir, holdout_fraction, root=".",
                            holdout_max_rows=holdout_max_rows or None, reward_wait_s=reward_wait_s)
    except ValueError as err:
        fail(str(err))
    typer.echo(report.summary())
