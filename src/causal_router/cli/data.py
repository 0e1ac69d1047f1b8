"""Commands on data files: ``validate``, ``embed``, ``simulate``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from ..data.loaders import is_routerbench_wide, read_frame, routerbench_wide_to_long, write_quarantine
from ..data.simulate import draw_logs
from ..data.simulate import simulate as simulate_logs
from ..features.embed import embed_with_stats
from ..settings.prices import load_prices
from ..validation.checks import LogContract
from ..validation.contract import assess
from ..validation.loaders import load_full_feedback
from .common import CacheDir, Encoder, fail, names
from .common import embed as embed_prompts
from .common import encoder as make_encoder

app = typer.Typer()


def _looks_like_table(df) -> bool:
    """RouterBench's wide layout, or several models answering the same prompt."""
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
    if kind not in ("auto", "logs", "table"):
        raise typer.BadParameter(f"expected logs, table or auto, got {kind!r}", param_hint="--kind")
    df = read_frame(file)
    if kind == "auto":
        kind = "table" if _looks_like_table(df) else "logs"
    if kind == "table" and is_routerbench_wide(df):
        df = routerbench_wide_to_long(df)
    wanted = names(models)
    contract = None
    if kind == "logs":  # the models train would use: --models, else the price sheet's
        allowed = wanted or (sorted(load_prices(prices)) if prices else None)
        contract = LogContract.make(allowed, require_all=bool(wanted))
    a = assess(df, kind, contract)
    if a.errors and (quarantine is None or a.frame_errors):
        raise a.error(source=file, set_aside="with --quarantine FILE")  # lists the warnings too
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
    df = read_frame(file)
    if "prompt" not in df:
        fail(f"{file}: no 'prompt' column")
    texts = df["prompt"].astype(str).drop_duplicates().tolist()
    start = time.perf_counter()
    try:
        enc = make_encoder(encoder, device, precision, threads, cache_dir)
        X, n_new = embed_with_stats(texts, cache_dir=cache_dir, encoder=enc)
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
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
    ff = load_full_feedback(table)
    X = None if policy == "uniform" else embed_prompts(ff.prompts, cache_dir, make_encoder(None, cache_dir=cache_dir))
    try:
        sim = simulate_logs(ff, X, policy, beta=beta, kappa=kappa, lam_log=lam_log, seed=seed)
    except ValueError as err:
        fail(str(err))
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        getattr(sim, split).to_parquet(out / f"{split}.parquet", index=False)
    draw_logs(sim.test, seed).to_parquet(out / "holdout.parquet", index=False)
    (out / "simulation.json").write_text(json.dumps({**sim.info, "table": str(table)}, indent=2, default=str))
    typer.echo(f"{out}: train {len(sim.train)} / val {len(sim.val)} logged queries, test {sim.info['n_test']} prompts "
               f"x {len(ff.models)} models (policy {policy})")
