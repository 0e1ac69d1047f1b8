"""``causal-router loop``: a simulated deployment on a full-feedback table."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..loop.run import run_loop
from .common import CacheDir, fail

app = typer.Typer()


@app.command()
def loop(
    table: Path = typer.Argument(..., help="Full-feedback table (long, or RouterBench wide)."),
    rounds: int = typer.Option(..., help="Rounds of the simulated deployment (round 0: the incumbent)."),
    batch: int = typer.Option(..., help="Prompts routed per round."),
    incumbent: str = typer.Option("cost-biased:3", help="Round 0's logging policy: uniform or cost-biased[:BETA]."),
    explore: float = typer.Option(0.05, help="Exploration rate of the served router, in [0, 1]."),
    lam: float = typer.Option(..., help="Cost weight lambda of the utility score - lam * cost."),
    seed: int = typer.Option(0, help="Seed of the split, the stream order and every draw."),
    out: Path = typer.Option(..., help="Loop folder: data/, decisions/, routers/, mlruns/, loop.csv, loop.json."),
    prices: Optional[Path] = typer.Option(None, help="Price sheet (default: params.yaml's crossfit.prices when it "
                                          "prices every model of the table)."),
    encoder: Optional[str] = typer.Option(None, help="module:callable returning the prompt encoder "
                                          "(default: the offline MiniLM through the embedding cache)."),
    cache_dir: Optional[Path] = CacheDir,
    scenario: str = typer.Option("none", help="A change from round 3 on: none, new-model, degrade, price, "
                                 "partial-feedback-a or partial-feedback-b (docs/loop.md)."),
    budget: Optional[float] = typer.Option(
        None, help="Hold a spend target: a fraction of the mean cost per decision of the table's best model (the "
        "one with the highest mean quality), e.g. 0.4. The loop then deploys the interval router, trained on "
        "0, 0.5, 1, 2, 5 and 10 x --lam, and serves each decision at the lambda of the service's budget "
        "controller (cold start: the lambda calibrated on round 0); OUT/budget_trace.csv has every decision's "
        "lambda, propensity and cost (docs/loop.md)."),
):
    """Simulate deployment on a full-feedback table: the champion routes each round's prompts with
    exploration, outcomes come back as feedback, ingest, retrain, register, and the gate decides."""
    if prices is not None and not prices.is_file():
        fail(f"price sheet not found: {prices}")
    try:
        from ..loop.scenarios import check_scenario

        check_scenario(scenario)  # refused before any work
        if budget is not None:  # a bad budget is refused before any work
            from ..loop.budget import budget_grid, check_fraction

            check_fraction(budget)
            budget_grid(lam)
        df = run_loop(table, rounds=rounds, batch=batch, incumbent=incumbent, explore=explore, lam=lam, seed=seed,
                      out=out, prices=prices, encoder=encoder, cache_dir=cache_dir, budget=budget,
                      scenario=scenario)
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
    typer.echo(df.round(4).to_string(index=False))
    typer.echo(f"records -> {out / 'loop.csv'}, gate decisions -> {out / 'loop.json'}"
               + (f", decisions under the budget -> {out / 'budget_trace.csv'}" if budget is not None else ""))
