"""The log contract as a Great Expectations 1.x suite, built from the catalogue.

Each check of :func:`causal_router.validation.catalogue.log_checks` that Great Expectations can
express becomes one expectation carrying the check's name in ``meta["name"]``, so GX results (and
Data Docs built from them) use the same names as ``causal-router validate`` and the quarantine.
The rows at fault always come from the catalogue (what the CLI and the loaders use); GX's verdict
is recorded next to each check in the report (``gx``), so a disagreement is visible.

Great Expectations is imported lazily, inside the functions: importing this module is cheap. The
context, data source and one suite per configuration are created once per process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..data import schema as S
from .catalogue import log_checks
from .checks import LogContract
from .contract import Assessment, assess
from .report import DataQualityReport

if TYPE_CHECKING:  # pragma: no cover
    import great_expectations as gx

__all__ = ["build_log_suite", "run_suite", "validate_logs_gx"]

#: Columns every expectation may refer to (the suite assumes the optional ones are present).
_ALL_COLUMNS = (*S.LOG_REQUIRED, S.PROPENSITY, S.INPUT_TOKENS, S.OUTPUT_TOKENS)


def _expectations(contract: LogContract, columns: Iterable[str]) -> list:
    """One expectation per catalogue check GX can express; warnings get GX's ``severity="warning"``."""
    return [c.expectation(**({"severity": "warning"} if contract.severity(c.name) == "warning" else {}))
            for c in log_checks(columns, contract) if c.expectation is not None]


def build_log_suite(models: Sequence[str] | None, positivity_floor: float, *, require_all: bool = True,
                    warn: Iterable[str] = ("positivity_floor",)) -> gx.ExpectationSuite:
    """The observational-log contract as a Great Expectations suite, defined by the catalogue.

    Parameters
    ----------
    models : sequence of str or None
        Configured models (adds ``model_in_set`` and ``models_present``).
    positivity_floor : float
        Threshold of ``positivity_floor``.
    require_all, warn
        As in :class:`~causal_router.validation.checks.LogContract`; checks in ``warn`` get
        GX's ``severity="warning"``.

    Returns
    -------
    great_expectations.ExpectationSuite
        Not attached to any context; assumes the optional columns are present.
    """
    import great_expectations as gx

    contract = LogContract.make(models, require_all=require_all, positivity_floor=positivity_floor, warn=warn)
    exps = _expectations(contract, _ALL_COLUMNS)
    n = len(contract.models) if contract.models else "any"
    return gx.ExpectationSuite(name=f"causal_router.logs[models={n},floor={positivity_floor:g}]", expectations=exps)


class _Runner:
    """One ephemeral context per process; one validation definition per suite configuration."""

    def __init__(self) -> None:
        import logging

        import great_expectations as gx

        # GX sets this module's logger to INFO on import: its "temporary directory for ephemeral docs
        # site" line says nothing a user can act on
        logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
        self._lock = threading.Lock()
        ctx = gx.get_context(mode="ephemeral")
        try:
            from great_expectations.data_context.types.base import ProgressBarsConfig

            ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        except Exception:  # pragma: no cover - only cosmetic
            pass
        try:
            ctx.variables.analytics_enabled = False
        except Exception:  # pragma: no cover
            pass
        asset = ctx.data_sources.add_pandas("causal_router").add_dataframe_asset("logs")
        self._ctx = ctx
        self._batch = asset.add_batch_definition_whole_dataframe("whole")
        self._definitions: dict[tuple, Any] = {}

    def definition(self, contract: LogContract, columns: tuple[str, ...]):
        key = (contract, columns)
        with self._lock:
            vd = self._definitions.get(key)
            if vd is None:
                import great_expectations as gx

                name = f"logs-{len(self._definitions)}"
                suite = self._ctx.suites.add(gx.ExpectationSuite(name=name,
                                                                 expectations=_expectations(contract, columns)))
                vd = self._ctx.validation_definitions.add(gx.ValidationDefinition(data=self._batch, suite=suite,
                                                                                  name=name))
                self._definitions[key] = vd
            return vd

    def run(self, df: pd.DataFrame, contract: LogContract):
        columns = tuple(c for c in _ALL_COLUMNS if c in df.columns)
        vd = self.definition(contract, columns)
        with self._lock:  # a validation definition is not meant to be run concurrently
            return vd.run(batch_parameters={"dataframe": df}, result_format={"result_format": "SUMMARY"})


_RUNNER: _Runner | None = None
_RUNNER_LOCK = threading.Lock()


def _runner() -> _Runner:
    global _RUNNER
    with _RUNNER_LOCK:
        if _RUNNER is None:
            _RUNNER = _Runner()
        return _RUNNER


def _gx_verdicts(result) -> dict[str, dict]:
    out = {}
    for res in result.results:
        cfg = res.expectation_config
        name = (cfg.meta or {}).get("name") or cfg.type
        info = res.exception_info or {}
        if "raised_exception" in info:  # flat form
            info = {"_": info}
        error = None
        for v in info.values():
            if isinstance(v, dict) and v.get("raised_exception"):
                error = (str(v.get("exception_message") or "exception").strip().splitlines() or ["exception"])[0][:200]
        count = (res.result or {}).get("unexpected_count")
        out[name] = {"success": None if error else bool(res.success),
                     "unexpected_count": None if count is None else int(count), "exception": error}
    return out


def validate_logs_gx(
    df: pd.DataFrame,
    models: Sequence[str] | None = None,
    positivity_floor: float = 1e-3,
    warn: Iterable[str] = ("positivity_floor",),
    *,
    require_all: bool = True,
) -> DataQualityReport:
    """Run the catalogue on the whole frame, and the Great Expectations suite built from it.

    Parameters
    ----------
    df : DataFrame, shape (n_rows, n_columns)
        An observational log. Its index is ignored: rows are reported by position.
    models, positivity_floor, warn, require_all
        As in :func:`causal_router.validation.contract.split_logs`.

    Returns
    -------
    DataQualityReport
        Rows and verdicts from the catalogue; each entry's ``gx`` holds GX's verdict.
    """
    contract = LogContract.make(models, require_all=require_all, positivity_floor=positivity_floor, warn=warn)
    return run_suite(df.reset_index(drop=True), contract)[1]


def run_suite(frame: pd.DataFrame, contract: LogContract) -> tuple[Assessment, DataQualityReport]:
    """The catalogue's assessment of ``frame`` (a RangeIndex log) and the report with GX's verdicts."""
    a = assess(frame, "logs", contract)
    gx = {}
    if not any(p.check == "columns_exist" for p in a.problems):
        gx = _gx_verdicts(_runner().run(frame, contract))
    config = {"models": list(contract.models) if contract.models else None,
              "positivity_floor": contract.positivity_floor, "warn": sorted(contract.warn),
              "require_all": contract.require_all}
    return a, DataQualityReport.from_assessment(a, frame, config, gx)
