"""Validation of the two data contracts (DESIGN.md section 3).

Checks return :class:`Problem` records naming the column, the rows (positional indices) and the
offending values, so that a user can fix the file; :func:`split_valid` separates bad rows into a
quarantine frame with the reason instead of dropping them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import schema as S

__all__ = [
    "Problem",
    "DataValidationError",
    "check_logs",
    "check_table",
    "validate_logs",
    "validate_table",
    "split_valid",
]

_SHOW = 5  # rows / values quoted per problem message
_PROPENSITY_ATOL = 1e-6
#: Problems about the frame as a whole: no row can be quarantined to fix them.
FRAME_LEVEL = frozenset({"missing_column", "model_without_rows"})
_DUPLICATE_KEYS = {"duplicate_prompt_id": [S.PROMPT_ID], "duplicate_pair": [S.PROMPT_ID, S.MODEL]}


@dataclass(frozen=True)
class Problem:
    """One failed check.

    Attributes
    ----------
    check : str
        Short id, e.g. ``"nan"``, ``"score_range"``, ``"duplicate_prompt_id"``.
    column : str or None
        The column at fault (comma-separated when several).
    rows : tuple of int
        Positional indices of every row at fault; empty for frame-level problems.
    message : str
        Human-readable report: column, count, first rows and offending values.
    """

    check: str
    column: str | None
    rows: tuple[int, ...]
    message: str


class DataValidationError(ValueError):
    """Raised when input data breaks its contract; ``.problems`` lists every failed check."""

    def __init__(self, problems: list[Problem], what: str):
        self.problems = list(problems)
        self.what = what
        lines = [f"{what} failed validation: {len(self.problems)} problem(s)"]
        lines += [f"  - {p.message}" for p in self.problems]
        super().__init__("\n".join(lines))


# --------------------------------------------------------------------------- helpers


def _head(values) -> list:
    return [v.item() if isinstance(v, np.generic) else v for v in list(values)[:_SHOW]]


def _row_problem(
    check: str, column: str, df: pd.DataFrame, mask, detail: str, show_values: bool = True
) -> list[Problem]:
    """A problem for the rows where ``mask`` is true, or nothing if there are none."""
    rows = np.flatnonzero(np.asarray(mask, dtype=bool))
    if rows.size == 0:
        return []
    msg = f"{check}: column {column!r}: {rows.size} row(s) {detail}; first rows {_head(rows)}"
    if show_values:
        msg += f" with values {_head(df[column].iloc[rows[:_SHOW]])}"
    return [Problem(check, column, tuple(rows.tolist()), msg)]


def _missing_columns(df: pd.DataFrame, required: Sequence[str]) -> list[Problem]:
    missing = [c for c in required if c not in df.columns]
    if not missing:
        return []
    msg = f"missing_column: required column(s) {missing} absent; found columns {list(df.columns)}"
    return [Problem("missing_column", ", ".join(missing), (), msg)]


def _numeric(df: pd.DataFrame, column: str, problems: list[Problem]) -> pd.Series:
    """Column as float; appends a ``bad_type`` problem for non-null values that are not numbers."""
    raw = df[column]
    num = pd.to_numeric(raw, errors="coerce").astype(float)
    problems += _row_problem("bad_type", column, df, num.isna() & raw.notna(), "are not numeric")
    return num


def _common_checks(df: pd.DataFrame, required: Sequence[str]) -> tuple[list[Problem], pd.Series | None]:
    """NaNs, types and ranges shared by both contracts; also returns the numeric propensity (or None)."""
    problems: list[Problem] = []
    for col in required:
        problems += _row_problem("nan", col, df, df[col].isna(), "are missing (NaN/None)", show_values=False)

    score = _numeric(df, S.SCORE, problems)
    problems += _row_problem("score_range", S.SCORE, df, (score < 0) | (score > 1), "outside [0, 1]")
    cost = _numeric(df, S.COST, problems)
    problems += _row_problem("negative_cost", S.COST, df, cost < 0, "are negative")
    problems += _row_problem("infinite", S.COST, df, np.isinf(cost), "are infinite")

    for col in (S.INPUT_TOKENS, S.OUTPUT_TOKENS):
        if col in df.columns:
            tokens = _numeric(df, col, problems)
            problems += _row_problem("negative_tokens", col, df, tokens < 0, "are negative")

    propensity = None
    if S.PROPENSITY in df.columns:
        propensity = _numeric(df, S.PROPENSITY, problems)
        missing = df[S.PROPENSITY].isna()
        problems += _row_problem("nan", S.PROPENSITY, df, missing, "are missing (NaN/None)", show_values=False)
    return problems, propensity


def _duplicates(df: pd.DataFrame, check: str) -> list[Problem]:
    keys = _DUPLICATE_KEYS[check]
    sub = df[keys]
    dup = sub.duplicated(keep=False) & sub.notna().all(axis=1)
    rows = np.flatnonzero(dup.to_numpy())
    if rows.size == 0:
        return []
    groups = sub.iloc[rows].drop_duplicates()
    shown = groups.head(_SHOW).to_numpy().tolist() if len(keys) > 1 else groups[keys[0]].head(_SHOW).tolist()
    label = f"({', '.join(keys)})" if len(keys) > 1 else keys[0]
    msg = (
        f"{check}: column {', '.join(keys)!r}: {rows.size} row(s) share {len(groups)} repeated {label} "
        f"value(s); first rows {_head(rows)}; repeated {shown}"
    )
    return [Problem(check, ", ".join(keys), tuple(rows.tolist()), msg)]


# --------------------------------------------------------------------------- checks


def check_logs(df: pd.DataFrame, models: Sequence[str] | None = None) -> list[Problem]:
    """Check an observational log (one row per served query).

    Parameters
    ----------
    df : DataFrame, shape (n_queries, n_columns)
        Columns ``prompt_id`` (unique), ``prompt``, ``model``, ``score`` in [0, 1], ``cost`` >= 0;
        optional ``propensity`` in (0, 1], ``input_tokens`` / ``output_tokens`` >= 0.
    models : sequence of str, optional
        The candidate models. When given, each must have at least one logged row and every logged
        model must be one of them.

    Returns
    -------
    list of Problem
        Empty when the log is valid. A missing required column is reported alone.
    """
    missing = _missing_columns(df, S.LOG_REQUIRED)
    if missing:
        return missing
    problems, propensity = _common_checks(df, S.LOG_REQUIRED)
    if propensity is not None:
        bad = (propensity <= 0) | (propensity > 1)
        problems += _row_problem("propensity_range", S.PROPENSITY, df, bad, "outside (0, 1]")
    problems += _duplicates(df, "duplicate_prompt_id")

    if models is not None:
        logged = df[S.MODEL]
        seen = set(logged.dropna().astype(str))
        absent = [m for m in models if str(m) not in seen]
        if absent:
            msg = (
                f"model_without_rows: column 'model': {len(absent)} candidate model(s) have no logged row: "
                f"{absent[:_SHOW * 4]}"
            )
            problems.append(Problem("model_without_rows", S.MODEL, (), msg))
        unknown = logged.notna() & ~logged.astype(str).isin([str(m) for m in models])
        detail = f"name a model not among the {len(models)} candidates"
        problems += _row_problem("unknown_model", S.MODEL, df, unknown, detail)
    return problems


def check_table(df: pd.DataFrame) -> list[Problem]:
    """Check a full-feedback table (one row per (prompt_id, model), every model for every prompt).

    Parameters
    ----------
    df : DataFrame, shape (n_prompts * n_models, n_columns)
        Columns ``prompt_id``, ``prompt``, ``model``, ``score`` in [0, 1], ``cost`` >= 0; optional
        ``propensity`` (the logging policy's probability of each model, in [0, 1] and summing to 1
        per prompt), ``input_tokens`` / ``output_tokens`` >= 0.

    Returns
    -------
    list of Problem
        Empty when the table is valid. A missing required column is reported alone.
    """
    missing = _missing_columns(df, S.TABLE_REQUIRED)
    if missing:
        return missing
    problems, propensity = _common_checks(df, S.TABLE_REQUIRED)
    if propensity is not None:
        bad = (propensity < 0) | (propensity > 1)
        problems += _row_problem("propensity_range", S.PROPENSITY, df, bad, "outside [0, 1]")
        # Surplus duplicate pairs are reported on their own; don't let them also break the sum.
        once = propensity.where(~df[[S.PROMPT_ID, S.MODEL]].duplicated(), 0.0)
        total = once.groupby(df[S.PROMPT_ID].to_numpy()).transform("sum")
        off = (total - 1).abs() > _PROPENSITY_ATOL
        problems += _prompt_problem(df, off, "propensity_sum", S.PROPENSITY, "whose propensities do not sum to 1")
    problems += _duplicates(df, "duplicate_pair")
    problems += _incomplete(df)
    return problems


def _prompt_problem(df: pd.DataFrame, mask: pd.Series, check: str, column: str, detail: str) -> list[Problem]:
    rows = np.flatnonzero(mask.to_numpy(dtype=bool))
    if rows.size == 0:
        return []
    ids = df[S.PROMPT_ID].iloc[rows].unique()
    msg = (
        f"{check}: column {column!r}: {len(ids)} prompt(s) {detail} ({rows.size} rows); "
        f"first rows {_head(rows)}; prompt_ids {_head(ids)}"
    )
    return [Problem(check, column, tuple(rows.tolist()), msg)]


def _incomplete(df: pd.DataFrame) -> list[Problem]:
    pairs = df[[S.PROMPT_ID, S.MODEL]].dropna()
    all_models = pd.unique(pairs[S.MODEL])
    n_models = pairs.groupby(S.PROMPT_ID, sort=False)[S.MODEL].nunique()
    short = n_models.index[n_models < len(all_models)]
    mask = df[S.PROMPT_ID].isin(short)
    problems = _prompt_problem(df, mask, "incomplete_prompt", S.MODEL, f"lack some of the {len(all_models)} models")
    if problems:
        # Name the missing models for the first few prompts only: cheap however large the table.
        have = pairs[pairs[S.PROMPT_ID].isin(short[:_SHOW])].groupby(S.PROMPT_ID, sort=False)[S.MODEL]
        names = set(map(str, all_models))
        lacks = "; ".join(f"{_head([pid])[0]!r} lacks {sorted(names - set(map(str, ms)))}" for pid, ms in have)
        p = problems[0]
        problems = [Problem(p.check, p.column, p.rows, f"{p.message}; {lacks}")]
    return problems


def validate_logs(df: pd.DataFrame, models: Sequence[str] | None = None) -> pd.DataFrame:
    """Return ``df`` unchanged if it is a valid observational log (see :func:`check_logs`).

    Raises
    ------
    DataValidationError
        Listing every problem found.
    """
    problems = check_logs(df, models)
    if problems:
        raise DataValidationError(problems, "observational log")
    return df


def validate_table(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` unchanged if it is a valid full-feedback table (see :func:`check_table`).

    Raises
    ------
    DataValidationError
        Listing every problem found.
    """
    problems = check_table(df)
    if problems:
        raise DataValidationError(problems, "full-feedback table")
    return df


# --------------------------------------------------------------------------- quarantine


def split_valid(
    df: pd.DataFrame, kind: str = "logs", models: Sequence[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Separate the rows that break the contract from the rest; nothing is lost.

    Parameters
    ----------
    df : DataFrame, shape (n_rows, n_columns)
        An observational log (``kind="logs"``) or a full-feedback table (``kind="table"``).
    kind : {"logs", "table"}
    models : sequence of str, optional
        Candidate models, for ``kind="logs"`` (see :func:`check_logs`).

    Returns
    -------
    valid : DataFrame, shape (n_valid, n_columns)
        The good rows, original index and columns.
    quarantined : DataFrame, shape (n_rows - n_valid, n_columns + 1)
        The bad rows with an extra ``reason`` column, e.g. ``"score_range:score; nan:cost"``.
        Of duplicated keys the first valid occurrence is kept. For tables, every row of a prompt
        that is incomplete (or would become so once its bad rows are removed) is quarantined, so
        ``valid`` is itself a complete table.

    Raises
    ------
    DataValidationError
        For frame-level problems (a missing column, a candidate model without rows), which no
        quarantine can fix.
    """
    if kind not in ("logs", "table"):
        raise ValueError(f"kind must be 'logs' or 'table', got {kind!r}")
    what = "observational log" if kind == "logs" else "full-feedback table"
    problems = check_logs(df, models) if kind == "logs" else check_table(df)
    frame_level = [p for p in problems if p.check in FRAME_LEVEL]
    if frame_level:
        raise DataValidationError(frame_level, what)

    n = len(df)
    reasons: list[list[str]] = [[] for _ in range(n)]
    bad = np.zeros(n, dtype=bool)

    def flag(rows, reason: str) -> None:
        for i in rows:
            reasons[i].append(reason)
        bad[np.asarray(rows, dtype=int)] = True

    deferred = []
    for p in problems:
        tag = f"{p.check}:{p.column}" if p.column else p.check
        if p.check in _DUPLICATE_KEYS:
            deferred.append((p, tag))
        else:
            flag(p.rows, tag)

    # Duplicates last, so that the copy kept is a valid one where there is one.
    for p, tag in deferred:
        rows = np.asarray(p.rows, dtype=int)
        keys = df[_DUPLICATE_KEYS[p.check]].iloc[rows].reset_index(drop=True)
        order = np.argsort(bad[rows], kind="stable")
        extra = keys.iloc[order].duplicated(keep="first").to_numpy()
        flag(rows[order][extra], tag)

    if kind == "table":
        # A prompt that loses a (prompt, model) cell is no longer complete: quarantine the rest of it.
        n_models = df[S.MODEL].nunique()
        kept = df[[S.PROMPT_ID, S.MODEL]][~bad]
        covered = kept.groupby(S.PROMPT_ID)[S.MODEL].nunique()
        complete = covered.index[covered == n_models]
        flag(np.flatnonzero(~df[S.PROMPT_ID].isin(complete).to_numpy() & ~bad), f"incomplete_prompt:{S.MODEL}")

    valid = df[~bad]
    quarantined = df[bad].copy()
    quarantined["reason"] = ["; ".join(r) for r, b in zip(reasons, bad) if b]
    return valid, quarantined
