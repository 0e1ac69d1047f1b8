"""The ``causal-router`` command: one sub-command per stage."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from .causal.scores import DEFAULT_CLIP
from .errors import CausalRouterError


class _Group(TyperGroup):
    """The one handler of the project's own errors: a readable message and exit code 1, no
    traceback (``--debug`` shows it)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CausalRouterError as err:
            if ctx.params.get("debug"):
                raise
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None


app = typer.Typer(cls=_Group, add_completion=False, no_args_is_help=True,
                  help="Learn LLM routers from observational logs (causal, regret-minimising).")

CacheDir = typer.Option(None, "--cache-dir", help="Embedding cache folder (default: $CAUSAL_ROUTER_CACHE_DIR "
                        "or ~/.cache/causal-router/embeddings).")
Encoder = typer.Option(None, "--encoder", help="Local Hugging Face model folder (default: offline all-MiniLM-L6-v2).")


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {text!r}") from None


def _names(text: Optional[str]) -> Optional[list[str]]:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)  # as the group's handler words every other user error
    raise typer.Exit(1)


def _encoder(path: Optional[str] = None, device: str = "auto", precision: str = "auto", threads: Optional[int] = None):
    from .features.embed import default_encoder
    from .features.encoder import TransformerEncoder

    if path is None and device == "auto" and precision == "auto" and threads is None:
        return default_encoder()
    return TransformerEncoder(path, device=device, precision=precision, threads=threads)


def _embed(texts, cache_dir, encoder):
    from .features.embed import embed_with_stats

    X, n_new = embed_with_stats(list(texts), cache_dir=cache_dir, encoder=encoder)
    logging.getLogger("causal_router").info("embedded %d new prompt(s), %d from cache", n_new, len(set(texts)) - n_new)
    return X


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress to stderr."),
         debug: bool = typer.Option(False, "--debug", help="Show the traceback of an input error.")):
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def _looks_like_table(df) -> bool:
    """RouterBench's wide layout, or several models answering the same prompt."""
    from .data.loaders import is_routerbench_wide

    if is_routerbench_wide(df):
        return True
    if not {"prompt_id", "model"} <= set(df.columns):
        return False
    return bool(df.groupby("prompt_id")["model"].nunique().max() > 1)


@app.command()
def validate(
    file: Path = typer.Argument(..., help="Observational log or full-feedback table (parquet, CSV, JSONL)."),
    kind: str = typer.Option("auto", help="logs, table or auto (a table has several rows per prompt_id)."),
    models: Optional[str] = typer.Option(None, help="Comma-separated models every log must cover."),
    prices: Optional[Path] = typer.Option(None, help="Price sheet: logged models must be in it (as train checks)."),
    quarantine: Optional[Path] = typer.Option(None, help="Write failing rows here (with a reason) instead of failing."),
):
    """Check a file against the data contract: exit 0 if valid, 1 with a report naming rows and columns."""
    from .config import load_prices
    from .data.loaders import is_routerbench_wide, read_frame, routerbench_wide_to_long, write_quarantine
    from .validation.catalogue import LogContract
    from .validation.contract import assess

    if kind not in ("auto", "logs", "table"):
        raise typer.BadParameter(f"expected logs, table or auto, got {kind!r}", param_hint="--kind")
    df = read_frame(file)
    if kind == "auto":
        kind = "table" if _looks_like_table(df) else "logs"
    if kind == "table" and is_routerbench_wide(df):
        df = routerbench_wide_to_long(df)
    names = _names(models)
    contract = None
    if kind == "logs":  # the models train would use: --models, else the price sheet's
        allowed = names or (sorted(load_prices(prices)) if prices else None)
        contract = LogContract.make(allowed, require_all=bool(names))
    a = assess(df, kind, contract)
    if a.errors and (quarantine is None or a.frame_errors):
        raise a.error(source=file)  # lists the warnings too
    for w in a.warnings:
        typer.echo(f"warning: {w.message}", err=True)
    what = "observational log" if kind == "logs" else "full-feedback table"
    if quarantine is not None:
        kept, bad = a.split(df)
        write_quarantine(bad, quarantine)
        checks = sorted({c for r in bad["reason"] for c in r.split("; ")})
        typer.echo(f"{file}: {what}, {len(kept)} valid row(s) kept, {len(bad)} row(s) quarantined to {quarantine}"
                   + (f" (failed checks: {', '.join(checks)})" if checks else ""))
        return
    typer.echo(f"{file}: valid {what}, {len(df)} rows")


@app.command()
def embed(
    file: Path = typer.Argument(..., help="Logs or table whose prompts to embed."),
    cache_dir: Optional[Path] = CacheDir,
    encoder: Optional[str] = Encoder,
    device: str = typer.Option("auto", help="auto (CUDA when present), cpu or cuda."),
    precision: str = typer.Option("auto", help="auto (the faster of fp32 and bf16, measured once per machine and "
                                  "GPU), fp32 or bf16."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Torch CPU threads (default: as many as "
                                          "torch uses on an idle machine)."),
):
    """Embed every distinct prompt of FILE into the cache (a second run embeds nothing)."""
    from .data.loaders import read_frame
    from .features.embed import embed_with_stats

    df = read_frame(file)
    if "prompt" not in df:
        _fail(f"{file}: no 'prompt' column")
    texts = df["prompt"].astype(str).drop_duplicates().tolist()
    start = time.perf_counter()
    try:
        enc = _encoder(encoder, device, precision, threads)
        X, n_new = embed_with_stats(texts, cache_dir=cache_dir, encoder=enc)
    except (FileNotFoundError, ValueError) as err:
        _fail(str(err))
    typer.echo(f"{len(texts)} prompts: {n_new} embedded, {len(texts) - n_new} from cache, dim {X.shape[1]}, "
               f"{time.perf_counter() - start:.1f}s")


@app.command()
def simulate(
    table: Path = typer.Argument(..., help="Full-feedback table (long, or RouterBench wide)."),
    policy: str = typer.Option("cost-biased", help="uniform, cost-biased or previous-router."),
    beta: float = typer.Option(3.0, help="Strength of the cost-biased policy."),
    kappa: Optional[float] = typer.Option(None, help="Peakedness of previous-router "
                                          "(default: mean max propensity 0.75)."),
    lam_log: Optional[float] = typer.Option(None, help="Lambda at which previous-router scores utility "
                                            "(default: 0.5 / the dearest model's mean cost)."),
    seed: int = typer.Option(0),
    out: Path = typer.Option(..., help="Output folder for train.parquet, val.parquet, test.parquet "
                             "(and holdout.parquet: logs drawn from the test prompts)."),
    cache_dir: Optional[Path] = CacheDir,
):
    """Simulate observational logs from a full-feedback table (60/20/20 split; docs/architecture.md, Data contracts)."""
    from .data.loaders import load_full_feedback
    from .data.simulate import draw_logs
    from .data.simulate import simulate as run

    ff = load_full_feedback(table)
    X = None if policy == "uniform" else _embed(ff.prompts, cache_dir, _encoder(None))
    try:
        sim = run(ff, X, policy, beta=beta, kappa=kappa, lam_log=lam_log, seed=seed)
    except ValueError as err:
        _fail(str(err))
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        getattr(sim, split).to_parquet(out / f"{split}.parquet", index=False)
    draw_logs(sim.test, seed).to_parquet(out / "holdout.parquet", index=False)
    (out / "simulation.json").write_text(json.dumps({**sim.info, "table": str(table)}, indent=2, default=str))
    typer.echo(f"{out}: train {len(sim.train)} / val {len(sim.val)} logged queries, test {sim.info['n_test']} prompts "
               f"x {len(ff.models)} models (policy {policy})")


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
):
    """Cross-fit nuisances, build DR utilities and train the routers on a lambda grid."""
    from .causal.nuisances import NuisanceConfig
    from .config import load_prices
    from .data.loaders import load_full_feedback, load_logs
    from .policy.training import check_methods, fit_routing_data, train_routerset

    sheet = load_prices(prices) if prices else None
    # the same contract as `validate --prices`: logged models must be in the sheet
    allowed = sorted(sheet) if sheet else None
    train_df = load_logs(logs, allowed, require_all=False)
    val_df = load_logs(val, allowed, require_all=False)
    try:
        method_list = check_methods(_names(methods))
        config = NuisanceConfig(cv, propensity, clip, seed)
    except (KeyError, ValueError) as err:
        _fail(str(err.args[0]))
    if not _floats(lambdas) or not all(math.isfinite(x) and x >= 0 for x in _floats(lambdas)):
        raise typer.BadParameter(f"expected finite, non-negative lambdas, got {lambdas!r}", param_hint="--lambdas")
    missing = sorted(set(sheet or ()) - set(train_df["model"]))
    if missing:
        typer.echo(f"warning: {len(missing)} model(s) of the price sheet have no logged row in {logs}: "
                   f"{', '.join(missing)}; their utilities rest on the pooled quality model alone", err=True)
    ff_eval = load_full_feedback(eval_set) if eval_set is not None else None
    enc = _encoder(encoder)
    X = _embed(train_df["prompt"], cache_dir, enc)
    X_val = _embed(val_df["prompt"], cache_dir, enc)
    X_eval = None if ff_eval is None else _embed(ff_eval.prompts, cache_dir, enc)
    start = time.perf_counter()
    try:
        data, meta = fit_routing_data(train_df, X, val_df, X_val, prices=sheet, nuisances=config, eval_set=ff_eval,
                                      X_eval=X_eval)
    except ValueError as err:
        _fail(f"{logs}{' and ' + str(eval_set) if eval_set else ''}: {err}")
    typer.echo(data.clip_report.summary())
    if ff_eval is not None:
        typer.echo(f"evaluation set: {meta['n_scored']} scored rows on {ff_eval.n_prompts} prompts join the "
                   "outcome models")
    train_routerset(data, _floats(lambdas), method_list, encoder_key=enc.key,
                    meta={**meta, "train_logs": str(logs), "val_logs": str(val),
                          **({"eval_set": str(eval_set)} if eval_set else {})}, out_dir=out)
    typer.echo(f"trained {', '.join(method_list)} on {len(train_df)} logs in {time.perf_counter() - start:.1f}s "
               f"-> {out}")


def _load_set(path: Path, encoder: Optional[str]):
    from .policy.routerset import RouterSet

    try:
        rs = RouterSet.load(path)
    except FileNotFoundError as err:
        _fail(str(err))
    enc = _encoder(encoder)
    from .features.encoder import features_compatible

    if rs.encoder_key and not features_compatible(rs.encoder_key, enc.key):
        _fail(f"{path} was trained on features of encoder {rs.encoder_key!r}, not {enc.key!r}: pass --encoder")
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
):
    """Score every router (plus oracle, random and the logging policy when known) on a full-feedback table."""
    from .data.loaders import load_full_feedback
    from .evaluation.metrics import aiq_table, evaluate_routers
    from .evaluation.plots import plot_utility

    rs, enc = _load_set(routers, encoder)
    grid = [rs.check_lambda(x) for x in _floats(lambdas)]
    try:
        ff = load_full_feedback(table).select_models(rs.models)
    except ValueError as err:
        _fail(f"{table} and {routers}: {err}")
    X = _embed(ff.prompts, cache_dir, enc)
    from .policy.routers import RandomRouter

    # the random baseline is always reported, trained or not
    routers_ = {"random": RandomRouter.for_models(len(rs.models)), **rs.routers}
    records = evaluate_routers(routers_, ff, X, grid, ff.input_tokens)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=2))
    aiq = aiq_table(records)
    if plot:
        plot_utility(records, plot)
    _print_table(records, aiq)


def _print_table(records, aiq=None):
    lams = sorted({r["lambda"] for r in records})
    methods = sorted({r["method"] for r in records},
                     key=lambda m: -sum(r["utility"] for r in records if r["method"] == m))
    head = (f"{'method':<20}" + "".join(f"{'l=' + format(lam, 'g'):>10}" for lam in lams) + f"{'mean':>9}"
            + (f"{'AIQ':>8}" if aiq else ""))
    typer.echo(head)
    for m in methods:
        us = [next(r["utility"] for r in records if r["method"] == m and r["lambda"] == lam) for lam in lams]
        line = f"{m:<20}" + "".join(f"{u:>10.4f}" for u in us) + f"{sum(us) / len(us):>9.4f}"
        typer.echo(line + (f"{aiq[m]:>8.4f}" if aiq else ""))


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
):
    """Print the chosen model, its propensity and the prompt, tab-separated, one line per prompt."""
    import numpy as np

    from .policy.exploration import ExplorationPolicy

    if prompts == ["-"]:
        prompts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not prompts or any(p == "-" for p in prompts):
        _fail("give prompts as arguments, or '-' alone to read them from stdin (one per line)")
    if routers.startswith("models:/"):
        rs, enc, default_method = _load_registered(routers, encoder)
    else:
        (rs, enc), default_method = _load_set(Path(routers), encoder), "rm-interval"
    lam = rs.check_lambda(lam, method or default_method)
    try:
        router = rs.get(method or default_method)
        policy = ExplorationPolicy(explore=explore)
    except KeyError as err:
        _fail(str(err.args[0]))
    except ValueError as err:
        _fail(str(err))
    X = _embed(prompts, cache_dir, enc)
    tpc = rs.meta.get("tokens_per_char")
    tokens = np.array([len(p) * tpc for p in prompts]) if tpc else None
    P = policy.probabilities(router.scores(X, lam, tokens))
    idx, prop = policy.draw(P, np.random.default_rng(seed))
    for p, k, q in zip(prompts, idx, prop):
        typer.echo(f"{rs.models[k]}\t{q:.6g}\t{p}")


def _load_registered(uri: str, encoder: Optional[str]):
    """A registered router's set, its encoder and its own method (``MLFLOW_TRACKING_URI``, else ``mlruns/``)."""
    from .registry.artifacts import load_model
    from .registry.tracking import ensure_configured

    ensure_configured()
    try:
        inner = load_model(uri).unwrap_python_model()
    except Exception as err:  # an unknown model, version or alias: say which
        _fail(f"{uri}: {err}")
    rs = inner.routerset
    enc = _encoder(encoder) if encoder else inner.encoder
    from .features.encoder import features_compatible

    if rs.encoder_key and not features_compatible(rs.encoder_key, enc.key):
        _fail(f"{uri} was trained on features of encoder {rs.encoder_key!r}, not {enc.key!r}: pass --encoder")
    return rs, enc, inner.config.get("method", "rm-interval")


@app.command()
def lineage(
    model_uri: str = typer.Argument(..., help="e.g. models:/causal-router-interval@champion"),
    root: Optional[Path] = typer.Option(None, help="Repository root (git and DVC; default: the project found "
                                        "from the current folder)."),
):
    """Which data, code and parameters made a registered router, and does the workspace still hold that data?"""
    from .registry.lineage import describe, format_lineage
    from .registry.tracking import ConfigError, configure, find_project_root

    try:
        configure(root)
    except ConfigError as err:
        _fail(str(err))
    root = root or find_project_root() or Path(".")
    try:
        typer.echo(format_lineage(describe(model_uri, repo_root=root)))
    except Exception as err:  # an unknown model or alias: say which
        _fail(f"{model_uri}: {err}")


@app.command()
def promote(
    params: Path = typer.Option(Path("params.yaml"), "--params", help="Pipeline parameters file."),
    name: Optional[str] = typer.Option(None, help="One registered model (default: interval and every endpoint)."),
):
    """Run the evidence gate: 'champion' moves to 'challenger' only if their paired DR difference is above 0."""
    from .pipeline.params import load_params
    from .pipeline.promotion import gate, holdout_features, router_names

    p = load_params(params)
    logs, X = holdout_features(".", p)
    for n in [name] if name else router_names(p):
        typer.echo(gate(".", n, logs, X, p).summary())


@app.command()
def rollback(
    model: str = typer.Argument(..., help="Registered model name, e.g. causal-router-interval."),
    reason: str = typer.Option(..., "--reason", help="Why (recorded as tags on both versions)."),
):
    """Move 'champion' back to the previous champion, recording the reason."""
    from .registry.lifecycle import RollbackError
    from .registry.lifecycle import rollback as do_rollback
    from .registry.tracking import ConfigError, configure

    try:
        configure()
        old, new = do_rollback(model, reason)
    except (ConfigError, RollbackError) as err:
        _fail(str(err))
    except Exception as err:  # an unknown model: say which
        _fail(f"{model}: {err}")
    typer.echo(f"{model}: champion v{old} -> v{new} ({reason})")


@app.command()
def benchmark(
    table: Path = typer.Argument(..., help="Full-feedback table (long, or RouterBench wide)."),
    policies: str = typer.Option("uniform,cost-biased:1,cost-biased:3,previous-router",
                                 help="Logging policies, each optionally NAME:STRENGTH (beta or kappa)."),
    seeds: str = typer.Option("0,1,2", help="Comma-separated seeds."),
    lambdas: str = typer.Option("0,50,100,200,500,1000", help="Comma-separated lambda grid."),
    out: Path = typer.Option(..., help="Output folder: records.csv and summary.csv."),
    methods: Optional[str] = typer.Option(None, help="Routers of the registry (default: all)."),
    peers: bool = typer.Option(True, help="Add EconML's DRPolicyForest (needs the 'bench' extra)."),
    mlflow_log: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log the study to MLflow."),
    cache_dir: Optional[Path] = CacheDir,
):
    """The paper's protocol: simulate logs per policy and seed, train every router, evaluate on the test split."""
    from .benchmark import parse_policies, run_study, summarize
    from .data.loaders import load_full_feedback
    from .features.hardware import cpu_model

    ff = load_full_feedback(table)
    enc = _encoder(None, precision="fp32")  # pinned: the study's figures must not depend on the CPU
    X = _embed(ff.prompts, cache_dir, enc)
    if peers:
        try:
            import econml  # noqa: F401
        except ImportError:
            _fail("--peers needs EconML: pip install -e '.[bench]' (or pass --no-peers)")
    dataset = table.name.split(".")[0]
    start = time.perf_counter()
    records = run_study(ff, X, parse_policies(policies), [int(x) for x in seeds.split(",")], _floats(lambdas), out,
                        dataset, _names(methods), peers,
                        meta={"embedding_precision": enc.resolved_precision, "cpu_model": cpu_model()})
    summary = summarize(records)
    summary.to_csv(out / "summary.csv", index=False)
    seconds = time.perf_counter() - start
    if mlflow_log:
        import mlflow

        from .registry.tracking import configure

        configure()
        with mlflow.start_run(run_name=f"benchmark-{dataset}"):
            mlflow.log_params({"table": str(table), "policies": policies, "seeds": seeds, "lambdas": lambdas,
                               "dataset": dataset, "embedding_precision": enc.resolved_precision,
                               "cpu_model": cpu_model()})
            mean = records.groupby(["policy", "requested_strength", "method"], dropna=False)["utility"].mean()
            mlflow.log_metrics({f"utility/{p}{'' if pd_isna(s) else ':' + format(s, 'g')}/{m}": float(v)
                                for (p, s, m), v in mean.items()} | {"study_seconds": seconds})
            mlflow.log_artifact(str(out / "records.csv"))
            mlflow.log_artifact(str(out / "summary.csv"))
    typer.echo(f"{len(records)} records in {seconds:.0f}s -> {out}/records.csv")


def pd_isna(x) -> bool:
    return x is None or x != x


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    model_uri: str = typer.Option("models:/causal-router-interval@champion", "--model-uri",
                                  help="Registered router: models:/NAME@ALIAS (reloaded when the alias moves) "
                                  "or models:/NAME/VERSION."),
    workers: int = typer.Option(1, help="uvicorn worker processes (each loads the model)."),
    params: Path = typer.Option(Path("params.yaml"), "--params", help="Pipeline parameters (the serve section)."),
):
    """Serve the router over HTTP (OpenAPI docs at /docs): POST /v1/route explores and logs every
    decision with its propensity, POST /v1/feedback records outcomes (see README)."""
    from .serving.app import serve as run
    from .serving.model import parse_model_uri
    from .serving.settings import ServeSettings

    if workers < 1:
        _fail(f"--workers must be at least 1, got {workers}")
    try:
        parse_model_uri(model_uri)
        settings = ServeSettings.from_params(params, model_uri=model_uri)
    except (ValueError, TypeError) as err:
        _fail(str(err))
    try:
        run(settings, host=host, port=port, workers=workers)
    except Exception as err:  # a model that cannot be loaded, an unreachable store: say what
        logging.getLogger("causal_router").debug("serve failed", exc_info=True)
        _fail(f"cannot serve {model_uri}: {err}")


@app.command()
def ingest(
    store: Optional[str] = typer.Option(None, "--store", help="Decision log URI (default: "
                                        "$CAUSAL_ROUTER_DECISIONS_URI, else sqlite:///decisions/decisions.db)."),
    data_dir: Path = typer.Option(Path("data"), "--data-dir", help="Logs folder (train.parquet, holdout.parquet)."),
    holdout_fraction: float = typer.Option(0.2, "--holdout-fraction",
                                           help="Share of the newest ingested rows that joins the holdout."),
    holdout_max_rows: Optional[int] = typer.Option(2000, "--holdout-max-rows", help="The holdout accumulates up to "
                                                   "this many rows, the oldest then train (0: each ingest's slice "
                                                   "replaces it)."),
):
    """Turn served decisions that got feedback into log rows (validated, appended by time, newest
    slice as the holdout) and record the data version with DVC; a second run adds nothing."""
    from .serving.ingest import ingest as run
    from .serving.store import DecisionStore, default_uri

    try:
        report = run(DecisionStore(store or default_uri()), data_dir, holdout_fraction, root=".",
                     holdout_max_rows=holdout_max_rows or None)
    except ValueError as err:
        _fail(str(err))
    typer.echo(report.summary())


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
):
    """Simulate deployment on a full-feedback table: the champion routes each round's prompts with
    exploration, outcomes come back as feedback, ingest, retrain, register, and the gate decides."""
    from .loop.run import run_loop

    if prices is not None and not prices.is_file():
        _fail(f"price sheet not found: {prices}")
    try:
        df = run_loop(table, rounds=rounds, batch=batch, incumbent=incumbent, explore=explore, lam=lam, seed=seed,
                      out=out, prices=prices, encoder=encoder, cache_dir=cache_dir)
    except (FileNotFoundError, ValueError) as err:
        _fail(str(err))
    typer.echo(df.round(4).to_string(index=False))
    typer.echo(f"records -> {out / 'loop.csv'}, gate decisions -> {out / 'loop.json'}")


stage_app = typer.Typer(no_args_is_help=True, help="Pipeline stages configured by params.yaml (what dvc.yaml runs).")
app.add_typer(stage_app, name="stage")
Params = typer.Option(Path("params.yaml"), "--params", help="Pipeline parameters file.")


def _stage_params(path: Path):
    from .pipeline.layout import ArtifactLayout
    from .pipeline.params import load_params

    p = load_params(path)
    return p, ArtifactLayout.from_params(p)


@stage_app.command("validate")
def stage_validate(params: Path = Params):
    """Great Expectations checks of the logs: valid rows, quarantine and report under artifacts/validation."""
    from .pipeline.stages import LOG_SPLITS, validate_stage

    p, art = _stage_params(params)
    v = p["validate"]
    out = validate_stage({s: p["data"][s] for s in LOG_SPLITS}, art.validation, v["models"],
                         v["positivity_floor"], v["warn"], prices=p["crossfit"].get("prices"),
                         eval_set=p["data"].get("eval_set"))
    typer.echo(f"validated: {', '.join(out)}")


@stage_app.command("embed")
def stage_embed(params: Path = Params, cache_dir: Optional[Path] = CacheDir):
    """Embed the validated logs and the test table (artifacts/embeddings: a versioned DVC output)."""
    from .pipeline.stages import LOG_SPLITS, embed_stage

    p, art = _stage_params(params)
    inputs = {s: art.valid(s) for s in (*LOG_SPLITS, "eval_set")}
    inputs["test"] = Path(p["data"]["test"])
    cfg = {**p["embed"], **({"cache_dir": cache_dir} if cache_dir else {})}
    out = embed_stage(inputs, art.embeddings, **cfg)
    typer.echo(f"embedded: {', '.join(out)}")


@stage_app.command("crossfit")
def stage_crossfit(params: Path = Params):
    """Cross-fit nuisances and build DR utilities (artifacts/crossfit)."""
    from .pipeline.stages import crossfit_stage

    p, art = _stage_params(params)
    crossfit_stage(art, **p["crossfit"])
    typer.echo(art.clip_report.read_text())


@stage_app.command("train")
def stage_train(params: Path = Params):
    """Train every configured router on the lambda grid (artifacts/routers)."""
    from .pipeline.stages import train_stage

    p, art = _stage_params(params)
    out = train_stage(art, p["train"]["lambdas"], p["train"]["methods"])
    typer.echo(f"trained -> {out}")


@stage_app.command("evaluate")
def stage_evaluate(params: Path = Params):
    """Evaluate the routers on the full-feedback test table (artifacts/metrics.json, plots)."""
    from .evaluation.metrics import aiq_table
    from .pipeline.stages import evaluate_stage

    p, art = _stage_params(params)
    records = evaluate_stage(art, p["data"]["test"], p["evaluate"]["lambdas"])
    _print_table(records, aiq_table(records))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
