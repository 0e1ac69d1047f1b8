"""Commands on router sets: ``train``, ``evaluate``, ``route``."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ..causal.nuisances import NuisanceConfig
from ..causal.scores import DEFAULT_CLIP
from ..evaluation.metrics import aiq_table, evaluate_routers
from ..features.encoders import check_features, encoder_for
from ..policy.exploration import ExplorationPolicy
from ..policy.routers import RandomRouter
from ..policy.routerset import RouterSet
from ..policy.training import check_methods, fit_routing_data, train_routerset
from ..settings.prices import load_prices
from ..validation.loaders import load_full_feedback, load_logs
from .common import CacheDir, Encoder, Trust, fail, floats, names, print_table
from .common import embed as embed_prompts
from .common import encoder as make_encoder

app = typer.Typer()


@app.command()
def train(
    logs: Path = typer.Argument(..., help="Training observational log."),
    val: Path = typer.Option(..., "--val", help="Validation observational log (model selection, early stopping)."),
    lambdas: str = typer.Option("0,100,500", help="Comma-separated lambda grid."),
    methods: Optional[str] = typer.Option(None, help="Comma-separated routers (default: all registered defaults)."),
    out: Path = typer.Option(..., help="Output folder of the trained router set."),
    cache_dir: Optional[Path] = CacheDir,
    encoder: Optional[str] = Encoder,
    prices: Optional[Path] = typer.Option(None, help="Price sheet YAML {model: {input, output}} in USD per 1M tokens."),
    propensity: str = typer.Option("fitted", help="fitted or logged (use the logs' propensity column)."),
    clip: float = typer.Option(DEFAULT_CLIP, help="Propensity floor for DR weights (its effect is reported)."),
    cv: int = typer.Option(5, help="Cross-fitting folds."),
    seed: int = typer.Option(0),
    eval_set: Optional[Path] = typer.Option(
        None, "--eval-set", help="Full-feedback table (models run on the same prompts, as `evaluate --table` reads): "
        "its outcomes also train the quality and cost models, anchoring the models the logs hold few rows of."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Processes for the RM heads (forked; the same routers). "
                             "2 on two idle cores: 21 s against 37 s for RouterBench; slower on busy cores."),
):
    """Cross-fit nuisances, build DR utilities and train the routers on a lambda grid."""
    sheet = load_prices(prices) if prices else None
    # the same contract as `validate --prices`: logged models must be in the sheet
    allowed = sorted(sheet) if sheet else None
    train_df = load_logs(logs, allowed, require_all=False)
    val_df = load_logs(val, allowed, require_all=False)
    try:
        method_list = check_methods(names(methods))
        config = NuisanceConfig(cv, propensity, clip, seed)
    except (KeyError, ValueError) as err:
        fail(str(err.args[0]))
    grid = floats(lambdas)
    if not grid or not all(math.isfinite(x) and x >= 0 for x in grid):
        raise typer.BadParameter(f"expected finite, non-negative lambdas, got {lambdas!r}", param_hint="--lambdas")
    missing = sorted(set(sheet or ()) - set(train_df["model"]))
    if missing:
        typer.echo(f"warning: {len(missing)} model(s) of the price sheet have no logged row in {logs}: "
                   f"{', '.join(missing)}; their utilities rest on the pooled quality model alone", err=True)
    ff_eval = load_full_feedback(eval_set) if eval_set is not None else None
    enc = make_encoder(encoder, cache_dir=cache_dir)
    X = embed_prompts(train_df["prompt"], cache_dir, enc)
    X_val = embed_prompts(val_df["prompt"], cache_dir, enc)
    X_eval = None if ff_eval is None else embed_prompts(ff_eval.prompts, cache_dir, enc)
    start = time.perf_counter()
    try:
        data, meta = fit_routing_data(train_df, X, val_df, X_val, prices=sheet, nuisances=config, eval_set=ff_eval,
                                      X_eval=X_eval)
    except ValueError as err:
        fail(f"{logs}{' and ' + str(eval_set) if eval_set else ''}: {err}")
    typer.echo(data.clip_report.summary())
    if ff_eval is not None:
        typer.echo(f"evaluation set: {meta['n_scored']} scored rows on {ff_eval.n_prompts} prompts join the "
                   "outcome models")
    train_routerset(data, grid, method_list, encoder_key=enc.key,
                    meta={**meta, "train_logs": str(logs), "val_logs": str(val),
                          **({"eval_set": str(eval_set)} if eval_set else {})}, out_dir=out, jobs=jobs)
    typer.echo(f"trained {', '.join(method_list)} on {len(train_df)} logs in {time.perf_counter() - start:.1f}s "
               f"-> {out}")


def _load_set(path: Path, encoder: Optional[str], trust: bool = False):
    from ..policy.routerset import UntrustedArtifactError

    try:
        rs = RouterSet.load(path, trust=trust)
    except (FileNotFoundError, UntrustedArtifactError) as err:
        fail(str(err))
    enc = make_encoder(encoder) if encoder else encoder_for(rs.encoder_key)  # the one it was trained on
    check_features(rs.encoder_key, enc, str(path))
    return rs, enc


@app.command()
def evaluate(
    routers: Path = typer.Argument(..., help="Trained router set folder."),
    table: Path = typer.Option(..., "--table", help="Full-feedback test table."),
    lambdas: str = typer.Option("0,100,500", help="Comma-separated lambdas to evaluate at."),
    out: Path = typer.Option(..., help="JSON file of records {method, lambda, utility, regret, accuracy, cost}."),
    plot: Optional[Path] = typer.Option(None, help="PNG of utility against lambda per method."),
    cache_dir: Optional[Path] = CacheDir,
    encoder: Optional[str] = Encoder,
    trust: bool = Trust,
):
    """Score every router (plus oracle, random and the logging policy when known) on a full-feedback table."""
    rs, enc = _load_set(routers, encoder, trust)
    grid = [rs.check_lambda(x) for x in floats(lambdas)]
    try:
        ff = load_full_feedback(table).select_models(rs.models)
    except ValueError as err:
        fail(f"{table} and {routers}: {err}")
    X = embed_prompts(ff.prompts, cache_dir, enc)
    # the random baseline is always reported, trained or not
    routers_ = {"random": RandomRouter.for_models(len(rs.models)), **rs.routers}
    records = evaluate_routers(routers_, ff, X, grid, ff.input_tokens)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=2))
    aiq = aiq_table(records)
    if plot:
        from ..evaluation.plots import plot_utility  # matplotlib only when asked

        plot_utility(records, plot)
    print_table(records, aiq)


@app.command()
def route(
    routers: str = typer.Argument(..., help="Trained router set folder, or a registered model "
                                  "(models:/NAME@ALIAS or models:/NAME/VERSION)."),
    prompts: list[str] = typer.Argument(..., help="Prompt texts to route; '-' reads one prompt per line from stdin."),
    method: Optional[str] = typer.Option(None, help="Which router of the set (default: rm-interval for a folder, "
                                         "the registered model's own router for models:/...)."),
    lam: float = typer.Option(..., "--lam", help="Cost preference lambda."),
    explore: float = typer.Option(0.0, help="Exploration rate of the served policy (0: the router's choice, "
                                  "propensity 1); see `causal-router serve`."),
    seed: Optional[int] = typer.Option(None, help="Seed of the exploration draws."),
    cache_dir: Optional[Path] = CacheDir,
    encoder: Optional[str] = Encoder,
    trust: bool = Trust,
):
    """Print the chosen model, its propensity and the prompt, tab-separated, one line per prompt."""
    if prompts == ["-"]:
        prompts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not prompts or any(p == "-" for p in prompts):
        fail("give prompts as arguments, or '-' alone to read them from stdin (one per line)")
    if routers.startswith("models:/"):
        rs, enc, default_method = _load_registered(routers, encoder)
    else:
        (rs, enc), default_method = _load_set(Path(routers), encoder, trust), "rm-interval"
    lam = rs.check_lambda(lam, method or default_method)
    try:
        router = rs.get(method or default_method)
        policy = ExplorationPolicy(explore=explore)
    except KeyError as err:
        fail(str(err.args[0]))
    except ValueError as err:
        fail(str(err))
    X = embed_prompts(prompts, cache_dir, enc)
    tpc = rs.meta.get("tokens_per_char")
    tokens = np.array([len(p) * tpc for p in prompts]) if tpc else None
    P = policy.probabilities(router.scores(X, lam, tokens))
    idx, prop = policy.draw(P, np.random.default_rng(seed))
    for p, k, q in zip(prompts, idx, prop):
        typer.echo(f"{rs.models[k]}\t{q:.6g}\t{p}")


def _load_registered(uri: str, encoder: Optional[str]):
    """A registered router's set, its encoder and its own method (``MLFLOW_TRACKING_URI``, else ``mlruns/``)."""
    from ..registry.artifacts import load_model  # mlflow: only for models:/ URIs
    from ..registry.tracking import ensure_configured

    ensure_configured()
    try:
        inner = load_model(uri).unwrap_python_model()
    except Exception as err:  # an unknown model, version or alias: say which
        fail(f"{uri}: {err}")
    rs = inner.routerset
    enc = make_encoder(encoder) if encoder else inner.encoder
    check_features(rs.encoder_key, enc, uri)
    return rs, enc, inner.config.get("method", "rm-interval")
