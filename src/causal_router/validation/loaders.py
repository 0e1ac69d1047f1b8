"""Load and validate: an observational log or a full-feedback table read from any supported format
(:func:`causal_router.data.loaders.read_frame`) and checked against the one catalogue."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..data.loaders import is_routerbench_wide, normalise, read_frame, routerbench_wide_to_long, write_quarantine
from ..data.matrices import FullFeedback
from .checks import LogContract
from .contract import assess

log = logging.getLogger(__name__)


def _checked(df: pd.DataFrame, kind: str, models, quarantine, source=None, **options) -> pd.DataFrame:
    a = assess(df, kind, LogContract.make(models, **options) if kind == "logs" else None)
    for p in a.warnings:
        log.warning("%s", p.message)
    if quarantine is None or a.frame_errors:
        if a.errors:
            raise a.error(source=source)
        return df
    valid, bad = a.split(df)
    write_quarantine(bad, quarantine)
    if len(bad):
        log.warning("%d row(s) quarantined to %s", len(bad), quarantine)
    return valid


def load_logs(
    path: str | Path, models: Sequence[str] | None = None, quarantine: str | Path | None = None, **options
) -> pd.DataFrame:
    """Load and validate an observational log.

    Parameters
    ----------
    path : str or Path
        Any format of :func:`read_frame`.
    models : sequence of str, optional
        Candidate models; each must have a logged row and every logged model must be one of them.
    quarantine : str or Path, optional
        If given, rows failing validation are written there (with a ``reason`` column; the file is
        written even when empty) and the valid rows returned, instead of raising.
    **options
        ``require_all``, ``positivity_floor``, ``warn``, ``for_training``
        (see :func:`causal_router.validation.contract.split_logs`). Warnings are logged.

    Returns
    -------
    DataFrame, shape (n_queries, n_columns)
        Columns ``prompt_id``, ``prompt``, ``model`` (str), ``score``, ``cost`` (float) and any
        optional ones (``propensity`` float), index reset.

    Raises
    ------
    DataValidationError
        Naming every bad column and row (frame-level problems even with ``quarantine``).
    """
    df = _checked(read_frame(path), "logs", models, quarantine, path, **options)
    return normalise(df).reset_index(drop=True)


def load_table(path: str | Path, quarantine: str | Path | None = None) -> pd.DataFrame:
    """Load and validate a full-feedback table, converting RouterBench's wide layout if needed.

    Parameters
    ----------
    path : str or Path
        Any format of :func:`read_frame`; long (one row per (prompt_id, model)) or RouterBench wide.
    quarantine : str or Path, optional
        As in :func:`load_logs`; whole prompts are quarantined so the table stays complete.

    Returns
    -------
    DataFrame, shape (n_prompts * n_models, n_columns)
        Columns ``prompt_id``, ``prompt``, ``model`` (str), ``score``, ``cost`` (float) and any
        optional ones, index reset.

    Raises
    ------
    DataValidationError
        Naming every bad column and row.
    """
    df = read_frame(path)
    if is_routerbench_wide(df):
        df = routerbench_wide_to_long(df)
    df = _checked(df, "table", None, quarantine, path)
    return normalise(df).reset_index(drop=True)


def load_full_feedback(path: str | Path, quarantine: str | Path | None = None) -> FullFeedback:
    """Load a full-feedback table (see :func:`load_table`) as dense arrays.

    Returns
    -------
    FullFeedback
        Scores and costs of shape (n_prompts, n_models), models sorted.
    """
    return FullFeedback.from_frame(load_table(path, quarantine))
