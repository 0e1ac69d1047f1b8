"""What every ``python -m flows.*`` entry point shares: ``--help``, the params file checked before
anything starts, one error line, the temporary Prefect server, and the retrain summary as a table.

The flows' own modules stay thin: each parses its arguments with :func:`parser` and runs its flow
through :func:`run`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["parser", "retrain_table", "run"]


def parser(prog: str, description: str, params: bool = True) -> argparse.ArgumentParser:
    """An argument parser whose ``--help`` prints and exits; ``params``: the optional PARAMS argument."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    if params:
        p.add_argument("params", nargs="?", default="params.yaml",
                       help="pipeline parameters file (default: params.yaml; a missing file is an error)")
    return p


def run(body: Callable[[], Any], params_path: str, signals: bool = False) -> tuple[int, Any]:
    """``(0, body())``, or ``(1, None)`` after one ``error:`` line on stderr for a project error.

    Before the flow starts: the params file is read (missing or invalid: the error), the tracking
    store is checked (a damaged store is one line, not a flow traceback) and Prefect's temporary
    server is started, tied to this process (:mod:`.prefect_server`). ``signals``: SIGTERM unwinds
    like Ctrl-C (the MLflow run ends FAILED, a half-done registration is undone).
    """
    from ..errors import CausalRouterError
    from ..registry.tracking import configure
    from ..settings.params import load_settings
    from .prefect_server import temporary_server

    quiet_libraries()
    try:
        load_settings(params_path)
        configure(".")
        with contextlib.ExitStack() as stack:
            if signals:
                from ..registry.recovery import terminate_on_signals

                stack.enter_context(terminate_on_signals())
            stack.enter_context(temporary_server())  # stops with this process, even after kill -9
            return 0, body()
    except CausalRouterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1, None


#: Libraries whose INFO lines (a temporary docs folder, "Updating lock file", MLflow's table set-up and
#: signature checks) say nothing a user can act on: the flows print one line per stage instead.
QUIET = ("great_expectations", "dvc", "mlflow")


def quiet_libraries() -> None:
    """Warnings and errors only from :data:`QUIET` (their own handlers and Prefect's console alike)."""
    import logging

    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def _estimate(e) -> str:
    if not e:
        return "n/a"
    return f"{e['value']:+.4f} [{e['ci_low']:+.4f}, {e['ci_high']:+.4f}]"


def _version(v) -> str:
    return "-" if v in (None, "") else f"v{v}"


def retrain_table(out: dict) -> str:
    """The retrain flow's result as text: what was ingested and trained, then one row per router."""
    ing = out.get("ingested") or {}
    lines = [f"ingested   {ing.get('added', 0)} decision(s), {ing.get('quarantined', 0)} quarantined"
             + (f", data version {ing['data_version']}" if ing.get("data_version") else ""),
             f"trained    run {out.get('run_id') or '-'}", ""]
    rows = [("router", "decision", "challenger", "champion", "difference [CI]", "reason")]
    for d in out.get("decisions") or []:
        rows.append((d.get("name", ""), d.get("decision", ""), _version(d.get("challenger_version")),
                     _version(d.get("champion_version")), _estimate(d.get("difference")), d.get("reason", "")))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) + "  " + str(r[-1]))
    return "\n".join(lines).rstrip()
