"""Great Expectations guard for observational logs (DESIGN.md section 3).

The log contract (``prompt_id`` unique, ``prompt``, ``model``, ``score`` in [0, 1], ``cost`` >= 0,
optional ``propensity`` in (0, 1]) is written as a Great Expectations 1.x suite in code and run on
the whole DataFrame through an ephemeral context. Each expectation carries a short stable name
(``meta["name"]``) so that reports, quarantine reasons and tests can refer to it:

=====================  ===========  ==========================================================
name                   level        meaning
=====================  ===========  ==========================================================
``columns_exist``      frame        the required columns are all present
``not_null:<col>``     row          no missing value in a required column (and ``propensity``)
``score_range``        row          ``0 <= score <= 1``
``cost_nonnegative``   row          ``cost >= 0``
``propensity_range``   row          ``0 < propensity <= 1`` (only when the column is present)
``unique_prompt_id``   row          ``prompt_id`` is unique
``model_in_set``       row          every logged model is a configured one (``models`` given)
``models_present``     frame        every configured model has at least one logged row
``positivity_floor``   row          ``propensity >= positivity_floor`` (a warning by default)
=====================  ===========  ==========================================================

Great Expectations is imported lazily, inside the functions: importing this module is cheap.
The context, data source and one suite per configuration are created once per process.
"""

from __future__ import annotations

import functools
import json
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..data import schema as S

if TYPE_CHECKING:  # pragma: no cover
    import great_expectations as gx

__all__ = [
    "FRAME_LEVEL",
    "DataQualityError",
    "DataQualityReport",
    "build_log_suite",
    "validate_logs_gx",
    "quarantine_split",
    "run_data_checks",
]

#: Expectations about the frame as a whole: no quarantine of rows can fix them.
FRAME_LEVEL = frozenset({"columns_exist", "models_present"})
#: Column added to quarantined rows: the failed expectations, semicolon-joined.
REASON_COLUMN = "failed_expectations"
_SHOW = 5
_UNIQUE = "unique_prompt_id"


# --------------------------------------------------------------------------- report


@dataclass
class DataQualityReport:
    """Outcome of :func:`validate_logs_gx`.

    Attributes
    ----------
    success : bool
        False iff some failed expectation has severity ``"error"`` (i.e. is not in ``warn``).
    results : list of dict
        One per expectation run: ``name``, ``column``, ``success``, ``severity`` (``"error"`` or
        ``"warning"``), ``unexpected_count``, ``unexpected_examples`` (at most 5 distinct values),
        ``rows`` (positional indices of the rows at fault; empty for frame-level expectations) and
        ``fallback`` (True when the rows were computed in pandas because Great Expectations raised,
        e.g. on a numeric check of a column holding text).
    n_rows : int
        Rows in the validated frame.
    """

    success: bool
    results: list[dict]
    n_rows: int
    config: dict = field(default_factory=dict)

    def failed(self, severity: str | None = None) -> list[dict]:
        """The failed expectations, optionally only those of one severity (``"error"``/``"warning"``)."""
        return [r for r in self.results if not r["success"] and (severity is None or r["severity"] == severity)]

    def result(self, name: str) -> dict:
        """The result of the expectation called ``name``; KeyError if it was not run."""
        for r in self.results:
            if r["name"] == name:
                return r
        raise KeyError(f"no expectation named {name!r}; ran {[r['name'] for r in self.results]}")

    def to_dict(self) -> dict:
        """JSON-ready form (NaN becomes None, numpy scalars become Python ones)."""
        return _jsonable(
            {
                "success": self.success,
                "n_rows": self.n_rows,
                "n_expectations": len(self.results),
                "n_failed": len(self.failed()),
                "config": self.config,
                "results": self.results,
            }
        )

    def summary(self) -> str:
        """One header line, then one line per failed expectation (column, count, examples, rows)."""
        bad = self.failed()
        if not bad:
            return f"observational log: {self.n_rows} rows, all {len(self.results)} expectations passed"
        n_err = sum(r["severity"] == "error" for r in bad)
        head = (
            f"observational log: {self.n_rows} rows, {len(bad)} failed expectation(s) "
            f"({n_err} error(s), {len(bad) - n_err} warning(s))"
        )
        return "\n".join([head] + [f"  - {_describe(r)}" for r in bad])

    def __str__(self) -> str:
        return self.summary()


class DataQualityError(ValueError):
    """Raised by :func:`run_data_checks` when a frame-level error expectation fails."""

    def __init__(self, report: DataQualityReport):
        self.report = report
        super().__init__(report.summary())


def _describe(r: dict) -> str:
    name, col, n = r["name"], r["column"], r["unexpected_count"]
    where = f"column {col!r}" if col else "frame"
    tag = f"{name} [{r['severity']}]"
    if name == "columns_exist":
        return f"{tag}: {n} required column(s) missing: {r['unexpected_examples']}"
    if name == "models_present":
        return f"{tag}: {where}: {n} configured model(s) have no logged row: {r['unexpected_examples']}"
    msg = f"{tag}: {where}: {n} unexpected row(s)"
    if r["unexpected_examples"]:
        msg += f", e.g. values {r['unexpected_examples']}"
    if r["rows"]:
        rows = ", ".join(map(str, r["rows"][:_SHOW])) + (", ..." if len(r["rows"]) > _SHOW else "")
        msg += f"; rows [{rows}]"
    if r.get("fallback"):
        msg += " (checked in pandas: Great Expectations could not evaluate it)"
    return msg


def _py(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else v
    if v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (pd.Timestamp, pd.Timedelta)):
        return str(v)
    return v


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset, np.ndarray)):
        return [_jsonable(v) for v in obj]
    v = _py(obj)
    if isinstance(v, float) and math.isinf(v):
        return str(v)  # JSON has no infinity
    if v is not None and not isinstance(v, (str, int, float, bool)):
        return str(v)
    return v


def _examples(values: Iterable) -> list:
    """First few distinct values, NaN-free and JSON-friendly."""
    out: list = []
    seen: set = set()
    for v in values:
        v = _py(v)
        if v is None:
            continue
        key = repr(v)
        if key in seen:
            continue
        seen.add(key)
        out.append(v)
        if len(out) == _SHOW:
            break
    return out


# --------------------------------------------------------------------------- suite


def _check_models(models: Sequence[str] | None) -> tuple[str, ...] | None:
    if models is None:
        return None
    if isinstance(models, str):
        raise TypeError("models must be a sequence of model names, not a single string")
    models = tuple(dict.fromkeys(models))
    if not models:
        raise ValueError("models must name at least one model (or be None to skip the model checks)")
    return models


def _expectations(models: tuple[str, ...] | None, positivity_floor: float) -> list:
    """Fresh expectation objects for the log contract (see the module docstring)."""
    import great_expectations.expectations as gxe

    if not 0 <= positivity_floor <= 1:
        raise ValueError(f"positivity_floor must be in [0, 1], got {positivity_floor}")

    def m(name: str) -> dict:
        return {"name": name}

    exps = [
        gxe.ExpectTableColumnsToMatchSet(column_set=list(S.LOG_REQUIRED), exact_match=False, meta=m("columns_exist"))
    ]
    for col in (*S.LOG_REQUIRED, S.PROPENSITY):
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col, meta=m(f"not_null:{col}")))
    exps += [
        gxe.ExpectColumnValuesToBeBetween(column=S.SCORE, min_value=0, max_value=1, meta=m("score_range")),
        gxe.ExpectColumnValuesToBeBetween(column=S.COST, min_value=0, meta=m("cost_nonnegative")),
        gxe.ExpectColumnValuesToBeBetween(
            column=S.PROPENSITY, min_value=0, max_value=1, strict_min=True, meta=m("propensity_range")
        ),
        gxe.ExpectColumnValuesToBeUnique(column=S.PROMPT_ID, meta=m(_UNIQUE)),
    ]
    if models is not None:
        exps += [
            gxe.ExpectColumnValuesToBeInSet(column=S.MODEL, value_set=list(models), meta=m("model_in_set")),
            gxe.ExpectColumnDistinctValuesToContainSet(
                column=S.MODEL, value_set=list(models), meta=m("models_present")
            ),
        ]
    exps.append(
        gxe.ExpectColumnValuesToBeBetween(
            column=S.PROPENSITY, min_value=float(positivity_floor), severity="warning", meta=m("positivity_floor")
        )
    )
    return exps


def build_log_suite(models: Sequence[str] | None, positivity_floor: float) -> gx.ExpectationSuite:
    """The observational-log contract as a Great Expectations suite, defined in code.

    Parameters
    ----------
    models : sequence of str or None
        Candidate models. When given, adds ``model_in_set`` (every logged model is one of them) and
        ``models_present`` (each has at least one row).
    positivity_floor : float
        Smallest acceptable logging propensity (``positivity_floor``); the expectation carries Great
        Expectations' ``severity="warning"``, every other one the default ``critical``.

    Returns
    -------
    great_expectations.ExpectationSuite
        Not attached to any context. The propensity expectations assume a ``propensity`` column;
        :func:`validate_logs_gx` leaves out expectations on columns the frame lacks.
    """
    import great_expectations as gx

    models_t = _check_models(models)
    name = f"causal_router.logs[models={len(models_t) if models_t else 'any'},floor={positivity_floor:g}]"
    return gx.ExpectationSuite(name=name, expectations=_expectations(models_t, positivity_floor))


class _Runner:
    """One ephemeral context per process; one validation definition per suite configuration."""

    def __init__(self) -> None:
        import great_expectations as gx

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

    def definition(self, models: tuple[str, ...] | None, floor: float, absent: frozenset[str]):
        key = (models, float(floor), absent)
        with self._lock:
            vd = self._definitions.get(key)
            if vd is None:
                import great_expectations as gx

                exps = [e for e in _expectations(models, floor) if getattr(e, "column", None) not in absent]
                name = f"logs-{len(self._definitions)}"
                suite = self._ctx.suites.add(gx.ExpectationSuite(name=name, expectations=exps))
                vd = gx.ValidationDefinition(data=self._batch, suite=suite, name=name)
                vd = self._ctx.validation_definitions.add(vd)
                self._definitions[key] = vd
            return vd

    def run(self, df: pd.DataFrame, models, floor: float):
        absent = frozenset(c for c in (*S.LOG_REQUIRED, S.PROPENSITY) if c not in df.columns)
        vd = self.definition(models, floor, absent)
        with self._lock:  # a validation definition is not meant to be run concurrently
            return vd.run(batch_parameters={"dataframe": df}, result_format={"result_format": "COMPLETE"})


_RUNNER: _Runner | None = None
_RUNNER_LOCK = threading.Lock()


def _runner() -> _Runner:
    global _RUNNER
    with _RUNNER_LOCK:
        if _RUNNER is None:
            _RUNNER = _Runner()
        return _RUNNER


# --------------------------------------------------------------------------- validation


def _pandas_mask(df: pd.DataFrame, name: str, models, floor: float) -> np.ndarray:
    """Rows failing the named check, computed in pandas with ``causal_router.data.validate`` semantics.

    Used when Great Expectations cannot evaluate a row-level expectation (it raises, e.g. on a
    numeric range over a column holding text): non-numeric values then count as failures, as the
    ``bad_type`` problems of :func:`causal_router.data.validate.check_logs` do.
    """
    if name.startswith("not_null:"):
        return df[name.split(":", 1)[1]].isna().to_numpy()
    if name == _UNIQUE:
        col = df[S.PROMPT_ID]
        return (col.duplicated(keep=False) & col.notna()).to_numpy()
    if name == "model_in_set":
        col = df[S.MODEL]
        return (col.notna() & ~col.astype(str).isin([str(m) for m in models])).to_numpy()
    column, ok = {
        "score_range": (S.SCORE, lambda x: (x >= 0) & (x <= 1)),
        "cost_nonnegative": (S.COST, lambda x: x >= 0),
        "propensity_range": (S.PROPENSITY, lambda x: (x > 0) & (x <= 1)),
        "positivity_floor": (S.PROPENSITY, lambda x: x >= floor),
    }[name]
    raw = df[column]
    num = pd.to_numeric(raw, errors="coerce").astype(float)
    return (raw.notna() & ~ok(num).fillna(False)).to_numpy(dtype=bool)


def _raised(res) -> str | None:
    info = res.exception_info or {}
    if "raised_exception" in info:  # flat form
        info = {"_": info}
    for v in info.values():
        if isinstance(v, dict) and v.get("raised_exception"):
            msg = str(v.get("exception_message") or "exception").strip().splitlines()
            return msg[0][:200] if msg else "exception"
    return None


def _to_entry(res, df: pd.DataFrame, models, floor: float, warn: frozenset[str]) -> dict:
    cfg = res.expectation_config
    name = (cfg.meta or {}).get("name") or cfg.type
    kw = cfg.kwargs
    r = res.result or {}
    entry: dict = {
        "name": name,
        "column": kw.get("column"),
        "success": bool(res.success),
        "severity": "warning" if name in warn else "error",
        "unexpected_count": 0,
        "unexpected_examples": [],
        "rows": [],
        "fallback": False,
    }
    if name == "columns_exist":
        missing = [c for c in S.LOG_REQUIRED if c not in df.columns]  # GX's own list is unordered
        entry.update(column=", ".join(missing) or None, unexpected_count=len(missing), unexpected_examples=missing)
        entry["success"] = not missing
        return entry
    if name == "models_present":
        present = set(df[S.MODEL].dropna().astype(str)) if S.MODEL in df.columns else set()
        absent = [m for m in models if str(m) not in present]
        entry.update(unexpected_count=len(absent), unexpected_examples=absent[: _SHOW * 4], success=not absent)
        return entry

    error = _raised(res)
    if error is not None or (not res.success and "unexpected_index_list" not in r):
        mask = _pandas_mask(df, name, models, floor)
        rows = np.flatnonzero(mask).tolist()
        col = entry["column"]
        values = [] if name.startswith("not_null:") else df[col].iloc[rows[: _SHOW * 20]]
        entry.update(
            success=not rows,
            unexpected_count=len(rows),
            unexpected_examples=_examples(values),
            rows=rows,
            fallback=True,
        )
        if error is not None:
            entry["gx_exception"] = error
        return entry

    rows = [int(i) for i in r.get("unexpected_index_list") or []]
    values = [] if name.startswith("not_null:") else r.get("unexpected_list") or []
    count = int(r.get("unexpected_count", len(rows)))
    entry.update(unexpected_count=count, unexpected_examples=_examples(values), rows=rows)
    return entry


@functools.lru_cache(maxsize=64)
def _order(models: tuple[str, ...] | None, floor: float) -> dict[str, int]:
    """Position of each expectation in the suite: GX reports results in its own order."""
    return {e.meta["name"]: i for i, e in enumerate(_expectations(models, floor))}


def validate_logs_gx(
    df: pd.DataFrame,
    models: Sequence[str] | None = None,
    positivity_floor: float = 1e-3,
    warn: Iterable[str] = ("positivity_floor",),
) -> DataQualityReport:
    """Run the log suite (:func:`build_log_suite`) on the whole frame.

    Parameters
    ----------
    df : DataFrame, shape (n_rows, n_columns)
        An observational log. Its index is ignored: rows are reported by position.
    models : sequence of str, optional
        Candidate models (adds ``model_in_set`` and ``models_present``).
    positivity_floor : float
        Threshold of the ``positivity_floor`` expectation.
    warn : iterable of str
        Names of expectations whose failure is only a warning (does not make ``success`` False).

    Returns
    -------
    DataQualityReport
        Expectations on columns the frame lacks are not run (``columns_exist`` reports a missing
        required column; ``propensity`` is optional).
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    models_t = _check_models(models)
    warn = frozenset([warn] if isinstance(warn, str) else warn)
    frame = df.reset_index(drop=True)  # GX reports pandas index labels: make them positions
    result = _runner().run(frame, models_t, positivity_floor)
    entries = [_to_entry(r, frame, models_t, positivity_floor, warn) for r in result.results]
    order = _order(models_t, float(positivity_floor))
    entries.sort(key=lambda e: order.get(e["name"], len(order)))  # GX returns them in its own order
    success = not any(not e["success"] and e["severity"] == "error" for e in entries)
    config = {
        "models": list(models_t) if models_t else None,
        "positivity_floor": positivity_floor,
        "warn": sorted(warn),
    }
    return DataQualityReport(success=success, results=entries, n_rows=len(frame), config=config)


# --------------------------------------------------------------------------- quarantine


def quarantine_split(df: pd.DataFrame, report: DataQualityReport) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Separate the rows implicated by failed error-severity row-level expectations; nothing is lost.

    Parameters
    ----------
    df : DataFrame, shape (n_rows, n_columns)
        The frame that ``report`` describes.
    report : DataQualityReport
        From :func:`validate_logs_gx` on ``df``.

    Returns
    -------
    valid : DataFrame, shape (n_valid, n_columns)
        The remaining rows, original index and columns.
    quarantine : DataFrame, shape (n_rows - n_valid, n_columns + 1)
        The bad rows with a ``failed_expectations`` column, e.g. ``"score_range;not_null:cost"``.
        Of rows sharing a ``prompt_id`` the first one that is otherwise valid stays in ``valid``.
        Warnings and frame-level failures (``columns_exist``, ``models_present``) quarantine nothing.
    """
    bad, reasons = _flag_rows(df, report)
    valid = df[~bad]
    quarantine = df[bad].copy()
    tags = [";".join(reasons[i]) for i in np.flatnonzero(bad).tolist()]
    quarantine[REASON_COLUMN] = pd.Series(tags, index=quarantine.index, dtype=object)
    return valid, quarantine


def _flag_rows(df: pd.DataFrame, report: DataQualityReport) -> tuple[np.ndarray, dict[int, list[str]]]:
    """Positional mask of the rows to quarantine and, per row, the names of the failed expectations."""
    if report.n_rows != len(df):
        raise ValueError(f"report describes {report.n_rows} rows but the frame has {len(df)}")
    n = len(df)
    reasons: dict[int, list[str]] = {}
    bad = np.zeros(n, dtype=bool)

    def flag(rows, name: str) -> None:
        rows = np.asarray(rows, dtype=int)
        for i in rows.tolist():
            reasons.setdefault(i, []).append(name)
        bad[rows] = True

    failed = [r for r in report.failed("error") if r["name"] not in FRAME_LEVEL]
    for r in failed:
        if r["name"] != _UNIQUE:
            flag(r["rows"], r["name"])
    for r in failed:
        if r["name"] == _UNIQUE and r["rows"]:
            # Duplicates last, so that the copy kept is a valid one where there is one.
            rows = np.asarray(r["rows"], dtype=int)
            keys = df[S.PROMPT_ID].iloc[rows].reset_index(drop=True)
            order = np.argsort(bad[rows], kind="stable")
            extra = keys.iloc[order].duplicated(keep="first").to_numpy()
            flag(rows[order][extra], r["name"])
    return bad, reasons


# --------------------------------------------------------------------------- stage


def run_data_checks(
    path_or_df: str | Path | pd.DataFrame,
    out_dir: str | Path,
    models: Sequence[str] | None = None,
    positivity_floor: float = 1e-3,
    warn: Iterable[str] = ("positivity_floor",),
) -> tuple[pd.DataFrame, DataQualityReport]:
    """Validate an observational log, quarantine its bad rows and write the outcome.

    Writes, always (also when it then raises):

    - ``out_dir/valid.parquet``: the rows that pass every error-severity row-level expectation;
    - ``out_dir/quarantine.parquet``: the other rows with a ``failed_expectations`` column (possibly
      empty); ``len(valid) + len(quarantine) == len(frame)``;
    - ``out_dir/report.json``: ``report.to_dict()`` plus ``"overlap"`` (:func:`overlap_report`
      records, one per model, over the valid rows; over all rows if a frame-level check failed).

    Row-level failures (a score of 1.5, a negative cost, a propensity of 0, a repeated
    ``prompt_id``, an unknown model, a missing value; the positivity floor when it is not in
    ``warn``) do **not** raise: those rows are quarantined, recorded in the report and the valid
    rows returned. Warnings quarantine nothing.

    Frame-level error failures (a required column missing, a configured model with no logged row)
    raise :class:`DataQualityError` whose message is ``report.summary()``. In that case no row is
    trusted: ``valid.parquet`` is written empty and every row goes to ``quarantine.parquet``, its
    ``failed_expectations`` naming the frame-level failures as well as its own.

    Parameters
    ----------
    path_or_df : str, Path or DataFrame
        A log file (read with :func:`causal_router.data.loaders.read_frame`) or a frame.
    out_dir : str or Path
        Created if needed.
    models, positivity_floor, warn
        As in :func:`validate_logs_gx`.

    Returns
    -------
    valid : DataFrame
    report : DataQualityReport

    Raises
    ------
    DataQualityError
        On a frame-level error failure (after the files are written).
    """
    from ..data.loaders import read_frame, write_frame
    from .overlap import overlap_report

    df = path_or_df if isinstance(path_or_df, pd.DataFrame) else read_frame(path_or_df)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    report = validate_logs_gx(df, models=models, positivity_floor=positivity_floor, warn=warn)
    frame_errors = [r["name"] for r in report.failed("error") if r["name"] in FRAME_LEVEL]
    if frame_errors:
        # Nothing is trusted: every row is quarantined, with the frame-level reasons first.
        bad, reasons = _flag_rows(df, report)
        valid = df.iloc[0:0]
        quarantine = df.copy()
        quarantine[REASON_COLUMN] = pd.Series(
            [";".join(frame_errors + reasons.get(i, [])) for i in range(len(df))], index=df.index, dtype=object
        )
    else:
        valid, quarantine = quarantine_split(df, report)
    overlap_on = "all" if frame_errors else "valid"

    payload = report.to_dict()
    source = valid if overlap_on == "valid" else df
    if S.MODEL in source.columns:
        ov = overlap_report(source, models=models, floor=positivity_floor)
        payload["overlap"] = _jsonable(ov.to_dict(orient="records"))
    else:
        payload["overlap"] = []
    payload["overlap_on"] = overlap_on

    write_frame(valid, out / "valid.parquet")
    write_frame(quarantine, out / "quarantine.parquet")
    (out / "report.json").write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")

    if frame_errors:
        raise DataQualityError(report)
    return valid, report
