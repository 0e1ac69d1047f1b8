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


def _limit(flag: str, what: str, key: str, default):
    """A hostile-load option of ``serve``: unset, params.yaml's ``serve.<key>`` applies (docs/deploy.md)."""
    return typer.Option(None, flag, help=f"{what} (serve.{key}, {default}).")


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
    header_timeout: Optional[float] = _limit("--header-timeout", "Seconds to send a request's headers, then the "
                                             "connection is closed", "header_timeout_s", 10),
    body_timeout: Optional[float] = _limit("--body-timeout", "Seconds to send the body, then 408", "body_timeout_s",
                                           30),
    request_timeout: Optional[float] = _limit("--request-timeout", "Seconds for a whole request, then 503 + "
                                              "Retry-After", "request_timeout_s", 60),
    max_concurrent: Optional[int] = _limit("--max-concurrent", "Requests in flight at once, beyond: 503 + "
                                           "Retry-After", "max_concurrent", 256),
    client_key: Optional[str] = typer.Option(None, "--client-key", help="Fair queuing per client: 'peer' (its "
                                             "address) or a header a trusted proxy sets, e.g. x-forwarded-for "
                                             "(serve.client_key). Run behind a TLS-terminating proxy: docs/deploy.md."),
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
                                             header_timeout_s=header_timeout, body_timeout_s=body_timeout,
                                             request_timeout_s=request_timeout, max_concurrent=max_concurrent,
                                             client_key=client_key,
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
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Logs folder (train.parquet, holdout.parquet; "
                                            "default: the folder data.dvc tracks, else <project>/data). One outside "
                                            "the project or other than data.dvc's is refused without --force."),
    holdout_fraction: float = typer.Option(_INGEST.holdout_fraction, "--holdout-fraction",
                                           help="Share of the newest ingested rows that joins the holdout."),
    holdout_max_rows: Optional[int] = typer.Option(_INGEST.holdout_max_rows, "--holdout-max-rows",
                                                   help="The holdout accumulates up to this many rows, the oldest "
                                                   "then train (0: each ingest's slice replaces it)."),
    reward_wait_s: float = typer.Option(_INGEST.reward_wait_s, "--reward-wait-s", min=0.0,
                                        help="An answered gateway decision without feedback this long is logged "
                                        "to no_feedback.parquet (feedback_missing), not trained on."),
    change_z: float = typer.Option(_INGEST.change_z or 0.0, "--change-z", min=0.0,
                                   help="The holdout restarts (its rows train) when a model's IPS-weighted mean "
                                   "score in the new rows is this many standard errors from the holdout's (0: never)."),
    force: bool = typer.Option(False, "--force", help="Ingest into a data folder that is not the one data.dvc "
                               "tracks (or outside the project: then without a DVC record)."),
    list_quarantined: bool = typer.Option(False, "--list-quarantined", help="List the quarantined decisions with "
                                          "their reasons, and stop."),
    retry_quarantined: bool = typer.Option(False, "--retry-quarantined", help="Validate the quarantined decisions "
                                           "again (after a fix of the contract, the limits or the price sheet)."),
):
    """Turn served decisions that got feedback into log rows (validated, appended by time, newest
    slice as the holdout) and record the data version with DVC, as one transaction: a second run adds
    nothing, and a run after a crash completes the interrupted one."""
    from ..serving.ingest import limits_for
    from ..serving.journal import tracked_data_dirs

    root = find_project_root() or Path.cwd()
    log_store = DecisionStore(store or default_uri(root))
    if list_quarantined:
        q = log_store.quarantined()
        for row in q.itertuples(index=False):
            typer.echo(f"{row.decision_id}\t{row.ingested_at}\t{row.reason}")
        typer.echo(f"{len(q)} quarantined decision(s); `causal-router ingest --retry-quarantined` validates them again")
        return
    if data_dir is None:
        data_dir = next(iter(tracked_data_dirs(root)), root / "data")
    outside = not Path(data_dir).resolve().is_relative_to(root.resolve())
    try:
        if retry_quarantined:
            typer.echo(f"{log_store.release_quarantined()} quarantined decision(s) released for validation")
        report = run_ingest(log_store, data_dir, holdout_fraction, root=root, dvc=not (force and outside),
                            holdout_max_rows=holdout_max_rows or None, limits=limits_for(root), force=force,
                            reward_wait_s=reward_wait_s, change_z=change_z or None,
                            change_min_rows=_INGEST.change_min_rows)
    except ValueError as err:
        fail(str(err))
    typer.echo(report.summary())
