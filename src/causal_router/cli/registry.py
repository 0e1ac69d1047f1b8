"""Commands on the model registry: ``lineage``, ``promote``, ``rollback``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..pipeline.promotion import gate, holdout_features, router_names, support_features
from ..registry.lifecycle import RollbackError
from ..registry.lifecycle import rollback as do_rollback
from ..registry.lineage import describe, format_lineage
from ..registry.tracking import ConfigError, configure
from ..settings.env import find_project_root
from ..settings.params import load_settings
from .common import Params, fail

app = typer.Typer()


@app.command()
def lineage(
    model_uri: str = typer.Argument(..., help="e.g. models:/causal-router-interval@champion"),
    root: Optional[Path] = typer.Option(None, help="Repository root (git and DVC; default: the project found "
                                        "from the current folder)."),
):
    """Which data, code and parameters made a registered router, and does the workspace still hold that data?"""
    try:
        configure(root)
    except ConfigError as err:
        fail(str(err))
    root = root or find_project_root() or Path(".")
    try:
        typer.echo(format_lineage(describe(model_uri, repo_root=root)))
    except Exception as err:  # an unknown model or alias: say which
        fail(f"{model_uri}: {err}")


@app.command()
def promote(
    params: Path = Params,
    name: Optional[str] = typer.Option(None, help="One registered model (default: interval and every endpoint)."),
):
    """Run the evidence gate: 'champion' moves to 'challenger' only if their paired DR difference is above 0."""
    p = load_settings(params)
    logs, X = holdout_features(".", p)
    support = support_features(".", p)
    for n in [name] if name else router_names(p):
        typer.echo(gate(".", n, logs, X, p, support).summary())


@app.command()
def rollback(
    model: str = typer.Argument(..., help="Registered model name, e.g. causal-router-interval."),
    reason: str = typer.Option(..., "--reason", help="Why (recorded as tags on both versions)."),
):
    """Move 'champion' back to the previous champion, recording the reason."""
    try:
        configure()
        old, new = do_rollback(model, reason)
    except (ConfigError, RollbackError) as err:
        fail(str(err))
    except Exception as err:  # an unknown model: say which
        fail(f"{model}: {err}")
    typer.echo(f"{model}: champion v{old} -> v{new} ({reason})")
