"""Read and write observational logs and full-feedback tables (validating loaders: validation/loaders.py).

Supported formats, chosen by file suffix: ``.parquet``, ``.csv``, ``.csv.gz``, ``.jsonl``,
``.jsonl.gz``, ``.json`` (a list of records) and ``.pkl`` / ``.pickle`` (a pandas pickle, as the
original RouterBench release ships; only load pickles you trust).
"""

from __future__ import annotations

import ast
import gzip
import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import MissingFileError, UnreadableFileError
from . import schema as S

__all__ = [
    "SUPPORTED_FORMATS",
    "read_frame",
    "write_frame",
    "is_routerbench_wide",
    "routerbench_wide_to_long",
    "normalise",
    "write_quarantine",
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
    raise UnreadableFileError(
        f"{str(path)!r}: unsupported file format; supported: {', '.join(SUPPORTED_FORMATS)}")


log = logging.getLogger("causal_router")


def _read_jsonl(path: Path, fmt: str) -> pd.DataFrame:
    """One JSON object per line; a broken line is named by its number (blank lines are skipped)."""
    opener = gzip.open if fmt.endswith(".gz") else open
    records = []
    with opener(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise UnreadableFileError(f"{str(path)!r}: line {number} is not UTF-8 text ({err.reason} at byte "
                                          f"{err.start}): re-save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise UnreadableFileError(f"{str(path)!r}: line {number} is not valid JSON ({err.msg} at column "
                                          f"{err.colno}): fix or remove that line") from None
            if not isinstance(record, dict):
                raise UnreadableFileError(f"{str(path)!r}: line {number} is a JSON {type(record).__name__}, not an "
                                          "object {column: value}")
            records.append(record)
    if not records:
        raise UnreadableFileError(f"{str(path)!r}: no records (the file holds only blank lines)")
    return pd.DataFrame.from_records(records)


def _read(path: Path, fmt: str) -> pd.DataFrame:
    if fmt == ".parquet":
        return pd.read_parquet(path)
    if fmt in (".csv", ".csv.gz"):
        return pd.read_csv(path, dtype={c: str for c in _TEXT_COLUMNS}, encoding="utf-8-sig")
    if fmt in (".jsonl", ".jsonl.gz"):
        return _read_jsonl(path, fmt)
    if fmt == ".json":
        return pd.read_json(path, orient="records", dtype=False, encoding="utf-8-sig")
    return pd.read_pickle(path)


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
    MissingFileError
        (a ``FileNotFoundError``) If the path does not exist or is a directory.
    UnreadableFileError
        (a ``ValueError``) If the suffix is not supported, the file is empty, or its content is
        not what the suffix says (garbage bytes, non-UTF-8 text, a broken JSONL line: named by
        its line number).
    """
    path = Path(path)
    if path.is_dir():
        raise MissingFileError(f"{str(path)!r} is a directory, not a data file")
    if not path.exists():
        raise MissingFileError(f"{str(path)!r}: no such file (supported formats: {', '.join(SUPPORTED_FORMATS)})")
    fmt = _format(path)
    if path.stat().st_size == 0:
        raise UnreadableFileError(f"{str(path)!r} is empty (0 bytes): expected a {fmt} file with a header and rows")
    try:
        df = _read(path, fmt)
    except UnreadableFileError:
        raise
    except UnicodeDecodeError as err:
        raise UnreadableFileError(f"{str(path)!r} is not UTF-8 text ({err.reason} at byte {err.start}): re-save it "
                                  "as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise UnreadableFileError(f"{str(path)!r} holds no columns: expected a header line") from None
    except (ValueError, OSError, EOFError, pickle.UnpicklingError, ImportError, TypeError,
            AttributeError, IndexError) as err:
        # pyarrow's ArrowInvalid is a ValueError; a gzip or pickle of garbage raises OSError/EOFError
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise UnreadableFileError(f"{str(path)!r} is not a readable {fmt} file: {first}") from None
    if not isinstance(df, pd.DataFrame):
        raise UnreadableFileError(f"{str(path)!r} holds a {type(df).__name__}, not a table")
    return df


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


def normalise(df: pd.DataFrame) -> pd.DataFrame:
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


def write_quarantine(bad: pd.DataFrame, path: str | Path) -> Path:
    """Write quarantined rows; a column mixing types (a number among texts) is written as text."""
    try:
        return write_frame(bad, path)
    except (ValueError, TypeError, OverflowError, NotImplementedError):  # pyarrow refuses mixed columns
        safe = bad.copy()
        for col in safe.columns:
            if safe[col].dtype == object:
                safe[col] = safe[col].map(lambda v: v if v is None or isinstance(v, str) else repr(v))
        return write_frame(safe, path)
