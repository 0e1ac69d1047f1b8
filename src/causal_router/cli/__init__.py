"""The ``causal-router`` command: one module per group of commands, one error handler.

A group's module is imported only when one of its commands runs (or for ``--help``), so
``causal-router --version`` and ``causal-router serve`` do not pay for torch or MLflow they do not use.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Optional

import typer
from typer.core import TyperGroup

from .. import __version__
from ..errors import CausalRouterError

__all__ = ["app"]

#: command -> the module of this package that defines it (its ``app``)
COMMANDS = {"validate": "data", "embed": "data", "simulate": "data",
            "train": "routers", "evaluate": "routers", "route": "routers",
            "lineage": "registry", "promote": "registry", "rollback": "registry",
            "serve": "serving", "ingest": "serving", "calibrate": "budget", "loop": "loop",
            "stage": "stage"}


class _Group(TyperGroup):
    """Commands loaded on use, and the one handler of the project's own errors: a readable message
    and exit code 1, no traceback (``--debug`` shows it)."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        from ..settings.env import use_project_prefect

        use_project_prefect()  # before a command's module imports Prefect (the loop flow)
        group = typer.main.get_group(importlib.import_module(f".{COMMANDS[name]}", __name__).app)
        return group if name == "stage" else group.commands[name]

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


def _version(value: bool) -> None:
    if value:
        typer.echo(f"causal-router {__version__}")
        raise typer.Exit()


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress to stderr."),
         debug: bool = typer.Option(False, "--debug", help="Show the traceback of an input error."),
         version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")):
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
