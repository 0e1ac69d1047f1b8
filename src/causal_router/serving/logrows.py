"""What an ingest writes: the log files' names in the data folder, and a decision with its feedback as
one log row."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..data import schema as S

TRAIN = "train.parquet"
HOLDOUT = "holdout.parquet"
VAL = "val.parquet"
QUARANTINE = "quarantine"
NO_FEEDBACK = "no_feedback.parquet"
FEEDBACK_MISSING = "feedback_missing"
SERVED_DATASET = "served"  # the dataset label of ingested rows when the logs carry one


def decision_rows(pending: pd.DataFrame) -> pd.DataFrame:
    """Decisions joined with their feedback (``DecisionStore.pending``) as log rows (n, 10)."""
    ts = pd.to_datetime(pending["created_at"], utc=True) if len(pending) else pd.Series([], dtype="datetime64[ns, UTC]")
    return pd.DataFrame({
        S.PROMPT_ID: pending["decision_id"].astype(str),
        S.PROMPT: pending["prompt"].astype(str),
        S.MODEL: pending["model"].astype(str),
        S.SCORE: pd.to_numeric(pending["score"], errors="coerce").astype(float),
        S.COST: pd.to_numeric(pending["cost"], errors="coerce").astype(float),
        S.PROPENSITY: pd.to_numeric(pending["propensity"], errors="coerce").astype(float),
        S.PROPENSITIES: pending["propensities"],
        S.TIMESTAMP: ts,
        S.INPUT_TOKENS: pd.to_numeric(pending["input_tokens"], errors="coerce").astype(float),
        S.OUTPUT_TOKENS: pd.to_numeric(pending["output_tokens"], errors="coerce").astype(float),
    })


def read_log(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.is_file() else None
