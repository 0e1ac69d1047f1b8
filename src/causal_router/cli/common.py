"""What every command group shares: options, parsers, the one way to fail, embedding through the cache."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from ..features.embed import embed_with_stats
from ..features.encoders import resolve_encoder

CacheDir = typer.Option(None, "--cache-dir", help="Embedding cache folder (default: $CAUSAL_ROUTER_CACHE_DIR "
                        "or ~/.cache/causal-router/embeddings).")
Trust = typer.Option(False, "--trust", help="Load a router folder without a recorded sha256 (or whose "
                     "payload does not match it): routers.joblib is a pickle and runs whatever code it holds.")
Encoder = typer.Option(None, "--encoder", help="static (the fast static encoder distilled locally from the "
                       "default one), static:DIMS, or a local Hugging Face model folder (default: offline "
                       "all-MiniLM-L6-v2).")
Params = typer.Option(Path("params.yaml"), "--params", help="Pipeline parameters file (a missing file is an error).")


def floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {text!r}") from None


def names(text: Optional[str]) -> Optional[list[str]]:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)  # as the group's handler words every other user error
    raise typer.Exit(1)


def encoder(path: Optional[str] = None, device: str = "auto", precision: str = "auto", threads: Optional[int] = None,
            cache_dir: Optional[Path] = None):
    return resolve_encoder(path, device=device, precision=precision, threads=threads, cache_dir=cache_dir)


def embed(texts, cache_dir, enc):
    X, n_new = embed_with_stats(list(texts), cache_dir=cache_dir, encoder=enc)
    logging.getLogger("causal_router").info("embedded %d new prompt(s), %d from cache", n_new, len(set(texts)) - n_new)
    return X


def print_table(records, aiq=None):
    """Utility per method (rows, best first) and lambda (columns), with the mean and AIQ."""
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
