"""Run the catalogue (:mod:`.catalogue`) on a frame: problems, and the split into kept and quarantined rows.

The one function to quarantine a log is :func:`split_logs`; :func:`check_logs` / :func:`validate_logs`
report or raise, and :func:`split_valid` does either contract. All of them go through
:func:`assess`, so the CLI, the loaders and the pipeline's validate stage agree row for row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data import schema as S
from .catalogue import log_checks, table_checks
from .checks import SHOW, Check, DataValidationError, LogContract, Problem

__all__ = [
    "REASON_COLUMN",
    "Assessment",
    "assess",
    "check_logs",
    "check_table",
    "validate_logs",
    "validate_table",
    "split_logs",
    "split_valid",
]

#: Column added to quarantined rows: the failed checks' names, "; "-joined.
REASON_COLUMN = "reason"
_WHAT = {"logs": "observational log", "table": "full-feedback table"}
_DEDUP = {"unique_prompt_id": [S.PROMPT_ID], "unique_pair": [S.PROMPT_ID, S.MODEL]}


def _head(values) -> list:
    return [v.item() if isinstance(v, np.generic) else v for v in list(values)[:SHOW]]


@dataclass
class Assessment:
    """Outcome of running a catalogue on one frame.

    Attributes
    ----------
    what : str
        ``"observational log"`` or ``"full-feedback table"``.
    checks : list of Check
        Every check run, in catalogue order.
    problems : list of Problem
        Every failed check (errors and warnings), in catalogue order.
    bad : ndarray of bool, shape (n_rows,)
        Rows to quarantine: those failing an error-severity row-level check (and, on a frame-level
        error, every row).
    reasons : dict of int -> str
        Per quarantined row (position), the "; "-joined names of the failed checks.
    """

    what: str
    checks: list[Check]
    problems: list[Problem]
    bad: np.ndarray
    reasons: dict[int, str]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def frame_errors(self) -> list[Problem]:
        """Errors no quarantine can fix (a missing column, no valid row, a single model...)."""
        return [p for p in self.errors if not p.rows]

    def split(self, df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(kept rows, quarantined rows with a ``reason`` column), original index and columns."""
        kept = df[~self.bad]
        quarantined = df[self.bad].copy()
        tags = [self.reasons.get(i, "") for i in np.flatnonzero(self.bad).tolist()]
        quarantined[REASON_COLUMN] = pd.Series(tags, index=quarantined.index, dtype=object)
        return kept, quarantined

    def error(self, report=None, source=None, set_aside: str | None = None) -> DataValidationError:
        """The error listing every problem; ``source`` (a path) is named first, with what to do.
        ``set_aside``: how the caller sets bad rows aside (e.g. ``with --quarantine FILE``, its own option); every
        other caller is pointed at ``causal-router validate``, so a hint never names an option the
        running command lacks."""
        what = f"{source}: {self.what}" if source else self.what
        hint = None
        if source:
            aside = set_aside or "(causal-router validate writes them to a quarantine file)"
            hint = (f"fix the file, or set the bad rows aside {aside}" if not self.frame_errors
                    else "no quarantine can fix this: fix the file (or its configured models)")
        return DataValidationError(self.errors + self.warnings, what, report, hint)


def _row_message(check: Check, df: pd.DataFrame, rows: np.ndarray) -> str:
    col = check.column
    if check.level == "prompt":
        ids = pd.unique(df[S.PROMPT_ID].iloc[rows].astype(str))
        msg = (f"{check.name}: column {col!r}: {len(ids)} prompt(s) {check.detail} ({rows.size} rows); "
               f"first rows {_head(rows)}; prompt_ids {_head(ids)}")
        if check.name == "complete_prompt":
            msg += "; " + _lacks(df, ids[:SHOW])
        return msg
    msg = f"{check.name}: column {col!r}: {rows.size} row(s) {check.detail}; first rows {_head(rows)}"
    if check.show_values:
        cols = [c.strip() for c in col.split(",")]
        vals = df[cols].iloc[rows[:SHOW]]
        shown = vals[cols[0]].tolist() if len(cols) == 1 else vals.to_numpy().tolist()
        msg += f" with values {_head([_short(v) for v in shown])}"
    return msg


def _short(v):
    if isinstance(v, str) and len(v) > 60:
        return v[:57] + "..."
    return v


def _lacks(df: pd.DataFrame, ids) -> str:
    pairs = df[[S.PROMPT_ID, S.MODEL]].dropna().astype(str)
    names = set(pairs[S.MODEL])
    have = pairs[pairs[S.PROMPT_ID].isin(ids)].groupby(S.PROMPT_ID, sort=False)[S.MODEL]
    return "; ".join(f"{pid!r} lacks {sorted(names - set(ms))}" for pid, ms in have)


def _frame_message(check: Check, df: pd.DataFrame, items: list) -> str:
    if check.name == "has_rows":
        return f"{check.name}: {check.detail} ({len(df)} row(s) in the file, none passes every check)"
    msg = f"{check.name}: {check.detail}: {items[:SHOW * 4]}"
    if check.name == "columns_exist":
        msg += f"; found columns {list(df.columns)}"
    return msg


def assess(df: pd.DataFrame, kind: str = "logs", contract: LogContract | None = None) -> Assessment:
    """Run the catalogue of ``kind`` on ``df``.

    Parameters
    ----------
    df : DataFrame, shape (n_rows, n_columns)
        Its index is ignored: rows are reported by position.
    kind : {"logs", "table"}
    contract : LogContract, optional
        For logs (default: no configured models, floor 1e-3, ``positivity_floor`` a warning).

    Returns
    -------
    Assessment
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    if kind not in _WHAT:
        raise ValueError(f"kind must be 'logs' or 'table', got {kind!r}")
    contract = contract or LogContract()
    checks = log_checks(df.columns, contract) if kind == "logs" else table_checks(df.columns)
    severity = contract.severity if kind == "logs" else (lambda name: "error")
    n = len(df)
    bad = np.zeros(n, dtype=bool)
    reasons: dict[int, list[str]] = {}
    problems: dict[str, Problem] = {}

    def flag(rows, name: str) -> None:
        for i in np.asarray(rows, dtype=int).tolist():
            reasons.setdefault(i, []).append(name)
        bad[np.asarray(rows, dtype=int)] = True

    def joined() -> dict[int, str]:
        return {i: "; ".join(r) for i, r in reasons.items()}

    exist = checks[0]
    missing = exist.missing(df)
    if missing:  # nothing else can be checked
        p = Problem(exist.name, ", ".join(missing), (), _frame_message(exist, df, missing), items=tuple(missing))
        flag(np.arange(n), exist.name)
        return Assessment(_WHAT[kind], [exist], [p], bad, joined())

    deferred = []
    for check in checks[1:]:
        if check.level not in ("row", "prompt"):
            continue
        rows = np.flatnonzero(check.mask(df))
        if rows.size == 0:
            continue
        sev = severity(check.name)
        problems[check.name] = Problem(check.name, check.column, tuple(rows.tolist()),
                                       _row_message(check, df, rows), sev)
        if sev != "error":
            continue
        if check.name in _DEDUP:
            deferred.append((check, rows))
        else:
            flag(rows, check.name)

    # Duplicates last, so that the copy kept is a valid one where there is one.
    for check, rows in deferred:
        keys = df[_DEDUP[check.name]].iloc[rows].astype(str).reset_index(drop=True)
        order = np.argsort(bad[rows], kind="stable")
        extra = keys.iloc[order].duplicated(keep="first").to_numpy()
        flag(rows[order][extra], check.name)

    if kind == "table" and S.MODEL in df.columns:
        # A prompt that lost a (prompt, model) cell is no longer complete: quarantine the rest of it.
        pairs = df[[S.PROMPT_ID, S.MODEL]].astype(str)
        n_models = pairs[S.MODEL][df[S.MODEL].notna().to_numpy()].nunique()
        kept = pairs[~bad & df[[S.PROMPT_ID, S.MODEL]].notna().all(axis=1).to_numpy()]
        covered = kept.groupby(S.PROMPT_ID)[S.MODEL].nunique()
        complete = covered.index[covered == n_models]
        flag(np.flatnonzero(~pairs[S.PROMPT_ID].isin(complete).to_numpy() & ~bad), "complete_prompt")

    kept_df = df[~bad]
    frame_fail = []
    for check in checks[1:]:
        if check.level != "kept":
            continue
        items = check.missing(kept_df)
        if items:
            sev = severity(check.name)
            problems[check.name] = Problem(check.name, check.column, (), _frame_message(check, df, items), sev,
                                           tuple(items))
            if sev == "error":
                frame_fail.append(check.name)
    if frame_fail:
        # No row is trusted: every row is quarantined, the frame-level reasons first.
        reasons = {i: frame_fail + reasons.get(i, []) for i in range(n)}
        bad[:] = True

    order = {c.name: i for i, c in enumerate(checks)}
    ordered = sorted(problems.values(), key=lambda p: order[p.check])
    return Assessment(_WHAT[kind], checks, ordered, bad, joined())


def _contract(models, require_all=True, positivity_floor=1e-3, warn=("positivity_floor",),
              for_training=True, limits=None) -> LogContract:
    return LogContract.make(models, require_all=require_all, positivity_floor=positivity_floor, warn=warn,
                            for_training=for_training, max_cost=getattr(limits, "max_cost", None),
                            max_tokens=getattr(limits, "max_tokens", None))


# --------------------------------------------------------------------------- public entry points


def check_logs(df: pd.DataFrame, models: Sequence[str] | None = None, **options) -> list[Problem]:
    """Check an observational log (one row per served query).

    Parameters
    ----------
    df : DataFrame, shape (n_queries, n_columns)
        Columns ``prompt_id`` (unique), ``prompt`` (text), ``model``, ``score`` in [0, 1], ``cost``
        finite and >= 0; optional ``propensity`` in (0, 1], ``input_tokens`` / ``output_tokens``
        finite and >= 0.
    models : sequence of str, optional
        The configured models: every logged model must be one of them, and each must have a row.
    **options
        ``require_all``, ``positivity_floor``, ``warn``, ``for_training`` (see :class:`LogContract`).

    Returns
    -------
    list of Problem
        Every failed check (``severity`` "error" or "warning"); no errors means valid. A missing
        required column is reported alone.
    """
    return assess(df, "logs", _contract(models, **options)).problems


def check_table(df: pd.DataFrame) -> list[Problem]:
    """Check a full-feedback table (one row per (prompt_id, model), every model for every prompt).

    Parameters
    ----------
    df : DataFrame, shape (n_prompts * n_models, n_columns)
        Columns ``prompt_id``, ``prompt``, ``model``, ``score`` in [0, 1], ``cost`` finite >= 0;
        optional ``propensity`` (the logging policy's probability of each model, in [0, 1] and
        summing to 1 per prompt), ``input_tokens`` / ``output_tokens`` finite >= 0.

    Returns
    -------
    list of Problem
        Empty when the table is valid. A missing required column is reported alone.
    """
    return assess(df, "table").problems


def validate_logs(df: pd.DataFrame, models: Sequence[str] | None = None, **options) -> pd.DataFrame:
    """Return ``df`` unchanged if it is a valid observational log (see :func:`check_logs`).

    Raises
    ------
    DataValidationError
        Listing every problem found (warnings included, after the errors).
    """
    a = assess(df, "logs", _contract(models, **options))
    if a.errors:
        raise a.error()
    return df


def validate_table(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` unchanged if it is a valid full-feedback table (see :func:`check_table`).

    Raises
    ------
    DataValidationError
        Listing every problem found.
    """
    a = assess(df, "table")
    if a.errors:
        raise a.error()
    return df


def split_logs(
    df: pd.DataFrame,
    models: Sequence[str] | None = None,
    *,
    require_all: bool = True,
    positivity_floor: float = 1e-3,
    warn=("positivity_floor",),
    for_training: bool = True,
    limits=None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate a log DataFrame and split it into kept rows and quarantined rows with reasons.

    This is THE function for quarantining logs (the pipeline's validate stage, ``causal-router
    validate --quarantine`` and ingestion all use it): nothing is dropped silently,
    ``len(kept) + len(quarantined) == len(df)``, and every kept row passes every check.

    Parameters
    ----------
    df : DataFrame, shape (n_rows, n_columns)
        An observational log (see :func:`check_logs`), any index.
    models : sequence of str, optional
        Configured models: a row naming another model is quarantined (``model_in_set``).
    require_all : bool
        Whether a configured model without rows is an error (else a warning; e.g. models taken
        from a price sheet).
    positivity_floor : float
        Threshold of the ``positivity_floor`` check.
    warn : iterable of str
        Checks whose failure only warns (quarantines nothing).
    for_training : bool
        Check that the kept rows can be trained on (``has_rows``, ``several_models``,
        ``models_present``). Pass False for a batch of ingested rows: a batch whose rows are all
        bad then comes back as (empty, all rows quarantined) instead of raising.
    limits : :class:`~causal_router.validation.plausibility.Limits`, optional
        Plausibility limits of cost and token counts (``cost_plausible``, ``<tokens>_plausible``).

    Returns
    -------
    kept : DataFrame, shape (n_kept, n_columns)
        The good rows, original index and columns. Of rows repeating a ``prompt_id`` the first
        otherwise valid one is kept.
    quarantined : DataFrame, shape (n_rows - n_kept, n_columns + 1)
        The bad rows with an extra ``reason`` column naming the failed checks, "; "-joined,
        e.g. ``"score_range; not_null:cost"``.

    Raises
    ------
    DataValidationError
        On a frame-level error (a required column missing; with ``for_training``, no valid row, a
        single model, a configured model without rows): no quarantine can fix those. Its
        ``.problems`` name the checks.
    """
    a = assess(df, "logs", _contract(models, require_all, positivity_floor, warn, for_training, limits))
    if a.frame_errors:
        raise a.error()
    return a.split(df)


def split_valid(
    df: pd.DataFrame, kind: str = "logs", models: Sequence[str] | None = None, **options
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`split_logs` for ``kind="logs"``; for a full-feedback table (``kind="table"``), every
    row of a prompt that is incomplete (or would become so once its bad rows are removed) is
    quarantined, so the kept rows are themselves a complete table.

    Raises
    ------
    DataValidationError
        On frame-level problems.
    """
    if kind == "logs":
        return split_logs(df, models, **options)
    a = assess(df, kind)
    if a.frame_errors:
        raise a.error()
    return a.split(df)
