"""``calibrate``: the lambda that meets a budget (or a share of the strong model) on logged prompts."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer

from .common import CacheDir, Encoder, Trust, fail

app = typer.Typer()


def parse_share(text: str) -> tuple[str, float]:
    """``MODEL=FRACTION`` -> (model, fraction in (0, 1]); a bad value fails with one line."""
    model, sep, frac = text.rpartition("=")
    try:
        value = float(frac)
    except ValueError:
        value = math.nan
    if not sep or not model or not (math.isfinite(value) and 0 < value <= 1):
        fail(f"--strong-share must be MODEL=FRACTION with a fraction in (0, 1], got {text!r}")
    return model, value


@app.command()
def calibrate(
    model_uri: str = typer.Argument(..., help="Registered router (models:/NAME@ALIAS, models:/NAME/VERSION) or a "
                                    "router set folder."),
    logs: Path = typer.Option(..., "--logs", help="Observational logs (with propensities) of the prompts to "
                              "calibrate on, held out from training."),
    budget: Optional[float] = typer.Option(None, "--budget", help="Target mean cost, USD per decision (> 0)."),
    strong_share: Optional[str] = typer.Option(None, "--strong-share", help="MODEL=FRACTION: send at most this "
                                               "share of the prompts to MODEL (the router's own choices)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the result as JSON."),
    method: Optional[str] = typer.Option(None, help="Which router of the set (default: rm-interval for a folder, "
                                         "the registered model's own router for models:/...)."),
    prices: Optional[Path] = typer.Option(None, help="Price sheet YAML (costs the held-out nuisances exactly)."),
    cv: int = typer.Option(5, help="Cross-fitting folds of the held-out nuisances."),
    seed: int = typer.Option(0),
    alpha: float = typer.Option(0.05, help="The estimates' intervals are (1 - alpha)."),
    cache_dir: Optional[Path] = CacheDir,
    encoder: Optional[str] = Encoder,
    trust: bool = Trust,
):
    """Print the smallest lambda at which the router meets the target on these prompts (the search's rule:
    causal_router.policy.budget) and the doubly robust quality and cost there, with their intervals."""
    if (budget is None) == (strong_share is None):
        fail("give --budget USD_PER_DECISION or --strong-share MODEL=FRACTION (one of them)")
    if budget is not None and not (math.isfinite(budget) and budget > 0):
        fail(f"--budget must be a finite number of USD per decision > 0, got {budget!r}")
    share = parse_share(strong_share) if strong_share is not None else None
    if not 0 < alpha < 1:
        fail(f"--alpha must be in (0, 1), got {alpha!r}")
    from ..causal.nuisances import NuisanceConfig
    from ..policy.budget import BudgetCalibrator
    from ..policy.data import holdout_evidence
    from ..settings.prices import load_prices
    from ..validation.loaders import load_logs
    from .common import embed
    from .routers import _load_registered, _load_set

    if model_uri.startswith("models:/"):
        rs, enc, default_method = _load_registered(model_uri, encoder)
    else:
        (rs, enc), default_method = _load_set(Path(model_uri), encoder, trust), "rm-interval"
    method = method or default_method
    try:
        router = rs.get(method)
    except KeyError as err:
        fail(str(err.args[0]))
    if share is not None and share[0] not in rs.models:
        fail(f"--strong-share: unknown model {share[0]!r}; the router routes among {', '.join(rs.models)}")
    sheet = load_prices(prices) if prices else None
    df = load_logs(logs, list(rs.models), require_all=False)
    X = embed(df["prompt"], cache_dir, enc)
    try:
        ev = holdout_evidence(df, X, rs.models, NuisanceConfig(cv=cv, seed=seed), sheet)
        cal = BudgetCalibrator(router, rs.models, ev, rs.lambda_range(method), rs.lambdas, alpha)
        result = cal.calibrate(budget, share)
    except ValueError as err:
        fail(f"{logs}: {err}")
    level = f"{1 - alpha:.0%}"
    typer.echo(result.message)
    for name, e in (("quality", result.quality), ("cost (USD per decision)", result.cost)):
        typer.echo(f"DR {name}: {e.value:.6g}  {level} interval [{e.ci_low:.6g}, {e.ci_high:.6g}]")
    typer.echo("shares: " + ", ".join(f"{m} {s:.1%}" for m, s in result.shares.items()))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"model_uri": model_uri, "method": method, "logs": str(logs), **result.to_dict()},
                                  indent=2))
        typer.echo(f"-> {out}")
