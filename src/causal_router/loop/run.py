"""``causal-router loop``: load the table, its features and the price sheet, run the loop flow, write the records."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .rounds import BUDGET_COLUMNS, RECORD_COLUMNS, loop_nuisances

#: Extra columns of a loop under a scenario.
SCENARIO_COLUMNS = ("scenario", "changed_model", "changed_model_share")


def load_encoder(spec: str | None):
    """The encoder ``spec`` names (``module:callable`` returning one with ``encode(texts) -> (n, d)``, or a
    local model folder; :func:`causal_router.features.encoders.resolve_encoder`), or None for the default."""
    if not spec:
        return None
    from ..features.encoders import resolve_encoder

    return resolve_encoder(spec)


def features(prompts, encoder=None, cache_dir=None):
    """Prompt features (n, d): ``encoder`` when given, else the default encoder through the embedding cache."""
    import numpy as np

    if encoder is not None:
        return np.asarray(encoder.encode(list(prompts)), dtype=float)
    from ..features.embed import embed_texts

    return np.asarray(embed_texts(list(prompts), cache_dir=cache_dir), dtype=float)


def default_prices(models, params_path="params.yaml"):
    """params.yaml's price sheet (``crossfit.prices``) when it prices every model of the table, else None."""
    from ..settings.params import load_settings
    from ..settings.prices import load_prices

    try:
        path = Path(load_settings(params_path).crossfit.prices)
        prices = load_prices(Path(params_path).parent / path)
    except (FileNotFoundError, KeyError, TypeError, ValueError):
        return None
    return prices if all(m in prices for m in models) else None


def run_loop(table, *, rounds: int, batch: int, incumbent: str, explore: float, lam: float, seed: int, out,
             prices=None, encoder: str | None = None, cache_dir=None, cv: int = 5,
             budget: float | None = None, scenario: str = "none") -> pd.DataFrame:
    """Run the loop flow; writes ``OUT/loop.csv`` (records) and ``OUT/loop.json`` (gate decisions).

    ``scenario``: a change of the world from round 3 (:mod:`causal_router.loop.scenarios`); other than
    ``none``, the records gain :data:`SCENARIO_COLUMNS`.

    ``budget``: a fraction of the best model's mean cost (:mod:`causal_router.loop.budget`) to hold
    with the service's controller; also writes ``OUT/budget_trace.csv`` (one row per budgeted decision)."""
    from ..policy.exploration import check_explore
    from ..settings.prices import load_prices
    from ..validation.loaders import load_full_feedback
    from .scenarios import check_scenario, make_scenario
    from .stream import make_stream

    check_explore(explore)
    check_scenario(scenario)
    if budget is not None and scenario != "none":
        raise ValueError("--budget runs without a scenario: give one or the other")
    ff = load_full_feedback(table)
    sheet = load_prices(prices) if prices else default_prices([str(m) for m in ff.models])
    X = features(ff.prompts, load_encoder(encoder), cache_dir)
    spend = None
    if budget is not None:
        from .budget import Budget, best_model, budget_grid, budget_usd

        spend = Budget(budget_usd(ff, budget), budget_grid(lam))
    stream = make_stream(ff, X, rounds=rounds, batch=batch, lam=lam, seed=seed, incumbent=incumbent)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    change = make_scenario(scenario, stream)
    params = {"table": str(table), "rounds": rounds, "batch": batch, "incumbent": incumbent, "explore": explore,
              "lam": lam, "seed": seed, "scenario": scenario}
    if spend is not None:
        name, cost = best_model(ff)
        params |= {"budget_fraction": budget, "budget_usd": spend.usd, "best_model": name, "best_model_cost": cost,
                   "lam_grid": spend.grid}
    from ..pipeline.prefect_server import temporary_server
    from .flow import loop_flow

    with temporary_server():  # without PREFECT_API_URL: stops with this process, even after kill -9
        result = loop_flow(stream, str(out), explore, loop_nuisances(seed, cv), sheet, params, spend, change)
    df = pd.DataFrame(result["records"])
    df.insert(0, "dataset", Path(table).name.split(".")[0])
    if scenario != "none":
        df["scenario"], df["changed_model"] = scenario, change.changed
        params |= {"changed_model": change.changed, "weaker_model": change.weaker}
    df = df[list(RECORD_COLUMNS) + ([] if spend is None else list(BUDGET_COLUMNS))
            + ([] if scenario == "none" else list(SCENARIO_COLUMNS))]
    df.to_csv(out / "loop.csv", index=False)
    if spend is not None:
        pd.DataFrame(spend.trace).to_csv(out / "budget_trace.csv", index=False)
        params |= {"calibrated_lam": spend.lam0, "calibration_met": spend.met}
    (out / "loop.json").write_text(json.dumps({**params, "registered_name": result["registered_name"],
                                               "decisions": result["decisions"]}, indent=2, default=str))
    return df
