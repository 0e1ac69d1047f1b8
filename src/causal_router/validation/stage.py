"""The pipeline's validate step for one log: quarantine, report, files."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from ..data import schema as S
from .checks import LogContract
from .contract import REASON_COLUMN
from .gx_suite import run_suite
from .report import DataQualityReport, jsonable

__all__ = ["run_data_checks"]


def run_data_checks(
    path_or_df: str | Path | pd.DataFrame,
    out_dir: str | Path,
    models: Sequence[str] | None = None,
    positivity_floor: float = 1e-3,
    warn: Iterable[str] = ("positivity_floor",),
    *,
    require_all: bool = True,
) -> tuple[pd.DataFrame, DataQualityReport]:
    """Validate an observational log, quarantine its bad rows and write the outcome.

    Writes, always (also when it then raises):

    - ``out_dir/valid.parquet``: the rows that pass every error-severity check;
    - ``out_dir/quarantine.parquet``: the other rows with a ``reason`` column naming the failed
      checks (possibly empty); ``len(valid) + len(quarantine) == len(frame)``;
    - ``out_dir/report.json``: ``report.to_dict()`` plus ``"overlap"`` (per-model overlap records
      over the valid rows; over all rows if a frame-level check failed).

    Row-level failures do **not** raise: those rows are quarantined (exactly as
    :func:`causal_router.validation.contract.split_logs` does) and the valid rows returned.

    Frame-level error failures (a required column missing, no valid row, a single model, a
    configured model with no valid row) raise :class:`DataValidationError` after the files are
    written; then no row is trusted: ``valid.parquet`` is empty and every row is quarantined, its
    ``reason`` naming the frame-level failures first.

    Parameters
    ----------
    path_or_df : str, Path or DataFrame
        A log file (read with :func:`causal_router.data.loaders.read_frame`) or a frame.
    out_dir : str or Path
        Created if needed.
    models, positivity_floor, warn, require_all
        As in :func:`causal_router.validation.contract.split_logs`.

    Returns
    -------
    valid : DataFrame
    report : DataQualityReport

    Raises
    ------
    DataValidationError
        On a frame-level error failure (after the files are written); ``.report`` is the report.
    """
    from ..data.loaders import normalise, read_frame, write_frame, write_quarantine
    from .overlap import overlap_report

    df = path_or_df if isinstance(path_or_df, pd.DataFrame) else read_frame(path_or_df)
    contract = LogContract.make(models, require_all=require_all, positivity_floor=positivity_floor, warn=warn)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    frame = df.reset_index(drop=True)
    assessment, report = run_suite(frame, contract)
    valid, quarantine = assessment.split(df)
    frame_errors = assessment.frame_errors

    payload = report.to_dict()
    source = df if frame_errors else valid
    payload["overlap"] = []
    if S.MODEL in source.columns and len(source):
        try:
            ov = overlap_report(source, models=contract.models, floor=contract.positivity_floor)
            payload["overlap"] = jsonable(ov.to_dict(orient="records"))
        except (ValueError, TypeError) as err:  # bad rows of an untrusted frame: report, don't crash
            payload["overlap_error"] = str(err)
    payload["overlap_on"] = "all" if frame_errors else "valid"
    payload["n_quarantined"] = len(quarantine)
    payload["reason_column"] = REASON_COLUMN

    write_frame(normalise(valid), out / "valid.parquet")
    write_quarantine(quarantine, out / "quarantine.parquet")
    (out / "report.json").write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")

    if frame_errors:
        raise assessment.error(report)
    return valid, report
