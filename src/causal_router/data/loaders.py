"""Read observational logs and full-feedback tables from disk, validated (DESIGN.md section 3).

Supported formats, chosen by file suffix: ``.parquet``, ``.csv``, ``.csv.gz``, ``.jsonl``,
``.jsonl.gz``, ``.json`` (a list of records) and ``.pkl`` / ``.pickle`` (a pandas pickle, as the
original RouterBench release ships; only load pickles you trust).
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import schema as S
from .matrices import FullFeedback
from .validate import split_valid, validate_logs, validate_table

__all__ = [
    "SUPPORTED_FORMATS",
    "read_frame",
    "write_frame",
    "is_routerbench_wide",
    "routerbench_wide_to_long",
    "load_logs",
    "load_table",
    "load_full_feedback",
]

SUPPORTED_FORMATS = (".parquet", ".csv", ".csv.gz", ".jsonl", ".jsonl.gz", ".json", ".pkl", ".pickle")
# Identifier and text columns are read as strings: CSV and JSON type inference would turn a
# prompt_id "007" into the integer 7 and break joins.
_TEXT_COLUMNS = (S.PROMPT_ID, S.PROMPT, S.MODEL, S.DATASET, "sample_id", "eval_name")
_FLOAT_COLUMNS = (S.SCORE, S.COST, S.PROPENSITY)
_COST_SUFFIX = "|total_cost"


def _format(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(SUPPORTED_FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    raise ValueError(f"{str(path)!r}: unsupported file format; supported: {', '.join(SUPPORTED_FORMATS)}")


def read_frame(path: str | Path) -> pd.DataFrame:
    """Read a data frame, choosing the reader by suffix.

    Parameters
    ----------
    path : str or Path
        A file ending in one of :data:`SUPPORTED_FORMATS`.

    Returns
    -------
    DataFrame
        As stored; in CSV and JSON files the text columns (``prompt_id``, ``prompt``, ``model``,
        ``dataset``, ``sample_id``, ``eval_name``) are kept as strings, missing values as NaN.

    Raises
    ------
    ValueError
        If the suffix is not supported.
    FileNotFoundError
        If the file does not exist.
    """
    path = Path(path)
    fmt = _format(path)
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r}: no such file (supported formats: {', '.join(SUPPORTED_FORMATS)})")
    if fmt == ".parquet":
        return pd.read_parquet(path)
    if fmt in (".csv", ".csv.gz"):
        return pd.read_csv(path, dtype={c: str for c in _TEXT_COLUMNS})
    if fmt in (".jsonl", ".jsonl.gz"):
        return pd.read_json(path, lines=True, dtype=False)
    if fmt == ".json":
        return pd.read_json(path, orient="records", dtype=False)
    return pd.read_pickle(path)


def write_frame(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a data frame in the format given by the suffix of ``path`` (see :func:`read_frame`).

    The index is not written. Parent directories are created. Returns the path.
    """
    path = Path(path)
    fmt = _format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df = df.reset_index(drop=True)
    if fmt == ".parquet":
        df.to_parquet(path, index=False)
    elif fmt in (".csv", ".csv.gz"):
        df.to_csv(path, index=False)
    elif fmt in (".jsonl", ".jsonl.gz"):
        df.to_json(path, orient="records", lines=True)
    elif fmt == ".json":
        df.to_json(path, orient="records")
    else:
        df.to_pickle(path)
    return path


# --------------------------------------------------------------------------- RouterBench


def _routerbench_models(df: pd.DataFrame) -> list[str]:
    cols = set(map(str, df.columns))
    stems = (c[: -len(_COST_SUFFIX)] for c in map(str, df.columns) if c.endswith(_COST_SUFFIX))
    return [m for m in stems if m in cols]


def is_routerbench_wide(df: pd.DataFrame) -> bool:
    """True if ``df`` has RouterBench's wide layout (some column ends with ``|total_cost``)."""
    return any(str(c).endswith(_COST_SUFFIX) for c in df.columns)


def _join_prompt(prompt):
    """RouterBench stores a prompt as a list of parts, often as the str of that list."""
    if isinstance(prompt, str):
        text = prompt.strip()
        if not (text.startswith("[") and text.endswith("]")):
            return prompt
        try:
            parts = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return prompt  # bracketed text that is not a list literal
    else:
        parts = prompt
    if isinstance(parts, (list, tuple, np.ndarray)) and all(isinstance(p, str) for p in parts):
        return "".join(parts)
    return prompt


def routerbench_wide_to_long(df: pd.DataFrame) -> pd.DataFrame:
    """Convert RouterBench's wide layout to a long full-feedback table.

    Parameters
    ----------
    df : DataFrame, shape (n_prompts, n_columns)
        One row per prompt with ``sample_id``, ``prompt`` (text, a list of parts, or the str of
        such a list), optional ``eval_name``, and per model X the columns ``X`` (score) and
        ``X|total_cost``; ``X|model_response``, ``oracle_model_to_route_to`` etc. are ignored.

    Returns
    -------
    DataFrame, shape (n_prompts * n_models, 5 or 6)
        Columns ``prompt_id`` (``sample_id`` as str), ``prompt`` (list parts joined with ""),
        ``model``, ``score``, ``cost`` and, when ``eval_name`` is present, ``dataset``; ordered
        by prompt, then model in column order. Values are not validated here.
    """
    models = _routerbench_models(df)
    for col in ("sample_id", S.PROMPT):
        if col not in df.columns:
            raise ValueError(f"RouterBench wide frame lacks column {col!r}; found {list(df.columns)}")
    if not models:
        raise ValueError(
            f"RouterBench wide frame has no model columns (X with X{_COST_SUFFIX}); found {list(df.columns)}"
        )

    k = len(models)
    prompts = df[S.PROMPT].map(_join_prompt)
    long = {
        S.PROMPT_ID: np.repeat(df["sample_id"].astype(str).to_numpy(), k),
        S.PROMPT: np.repeat(prompts.to_numpy(), k),
        S.MODEL: np.tile(np.array(models, dtype=object), len(df)),
        S.SCORE: df[models].to_numpy().ravel(),
        S.COST: df[[m + _COST_SUFFIX for m in models]].to_numpy().ravel(),
    }
    if "eval_name" in df.columns:
        long[S.DATASET] = np.repeat(df["eval_name"].astype(str).to_numpy(), k)
    return pd.DataFrame(long)


# --------------------------------------------------------------------------- loaders


def _normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Cast validated columns: text columns to str, score/cost/propensity to float."""
    df = df.copy()
    for col in (S.PROMPT_ID, S.PROMPT, S.MODEL, S.DATASET):
        if col in df.columns:
            df[col] = df[col].astype(str)
    for col in _FLOAT_COLUMNS:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col]).astype(float)
    for col in (S.INPUT_TOKENS, S.OUTPUT_TOKENS):
        if col in df.columns:
            df[col] = pd.to_numeric(df[col])
    return df


def _checked(df: pd.DataFrame, kind: str, models, quarantine) -> pd.DataFrame:
    if quarantine is None:
        return validate_logs(df, models) if kind == "logs" else validate_table(df)
    valid, bad = split_valid(df, kind, models)
    write_frame(bad, quarantine)
    return valid


def load_logs(
    path: str | Path, models: Sequence[str] | None = None, quarantine: str | Path | None = None
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
    df = _checked(read_frame(path), "logs", models, quarantine)
    return _normalise(df).reset_index(drop=True)


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
    df = _checked(df, "table", None, quarantine)
    return _normalise(df).reset_index(drop=True)


def load_full_feedback(path: str | Path, quarantine: str | Path | None = None) -> FullFeedback:
    """Load a full-feedback table (see :func:`load_table`) as dense arrays.

    Returns
    -------
    FullFeedback
        Scores and costs of shape (n_prompts, n_models), models sorted.
    """
    return FullFeedback.from_frame(load_table(path, quarantine))
