"""Ingest: decisions that got feedback become observational log rows for the next training run.

Each decision with feedback not ingested before becomes one row under the data contract
(``prompt_id`` = decision id, ``prompt``, ``model``, ``score``, ``cost``, ``propensity`` = the
probability the served policy drew that model with, ``timestamp``, ``input_tokens``,
``output_tokens``). Rows are validated; bad ones go to ``<data>/quarantine/`` with their reason.
Good rows are appended by time: the newest ``holdout_fraction`` of them joins the holdout (what the
promotion gate scores, so it always judges data no challenger trained on) and the older ones the
training logs. The holdout accumulates up to ``holdout_max_rows`` (its oldest rows beyond that then
train); with ``holdout_max_rows=None`` each ingest's slice replaces it and the previous holdout
trains. Why accumulate: the gate compares challenger and champion on the rows where they disagree,
and one round's slice (60 rows in the loop study) held too few of them to ever promote. The data folder's new version
is recorded with DVC (``data.dvc``). A second run adds nothing: ingested decisions are recorded
in the store, and decision ids already in the logs are never added twice.

Decisions the gateway answered (:mod:`causal_router.serving.gateway`, or the LiteLLM callback) carry a
recorded call outcome: their rows take its cost (usage x the gateway file's prices, the feedback's
cost) and its token counts from the upstream's ``usage``. A gateway fallback (``fallback_of``: no
policy drew it) never becomes a log row: it is recorded as ingested with outcome ``fallback`` and
counted in the report. **No feedback**: a decision answered without error that got no feedback within
``reward_wait_s`` (params.yaml ``ingest.reward_wait_s``) of its answer is appended to
``<data>/no_feedback.parquet`` (the log columns without ``score``, plus ``feedback_missing`` = True)
and recorded as ingested with outcome ``no_feedback``; it never joins the training logs or the
holdout (feedback sent later gets 409), and the report counts it. The report gives the feedback rate
per model over the answered decisions.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..data import schema as S

log = logging.getLogger(__name__)

TRAIN = "train.parquet"
HOLDOUT = "holdout.parquet"
VAL = "val.parquet"
QUARANTINE = "quarantine"
NO_FEEDBACK = "no_feedback.parquet"
FEEDBACK_MISSING = "feedback_missing"
SERVED_DATASET = "served"  # the dataset label of ingested rows when the logs carry one


@dataclass
class IngestReport:
    """What one ingest did."""

    added: int = 0
    to_train: int = 0
    to_holdout: int = 0
    quarantined: int = 0
    already_present: int = 0
    quarantine_file: str | None = None
    data_version: str | None = None
    first: str | None = None
    last: str | None = None
    notes: list = field(default_factory=list)
    fallbacks: int = 0
    no_feedback: int = 0
    feedback_rates: dict = field(default_factory=dict)  # {model: (with feedback, answered)}

    def gateway_lines(self) -> list[str]:
        lines = []
        if self.fallbacks:
            lines.append(f"{self.fallbacks} gateway fallback decision(s) kept out of the logs (no policy drew them)")
        if self.no_feedback:
            lines.append(f"{self.no_feedback} answered decision(s) without feedback past ingest.reward_wait_s -> "
                         f"{NO_FEEDBACK} ({FEEDBACK_MISSING}; not trained on)")
        if self.feedback_rates:
            rates = ", ".join(f"{m} {f}/{n} ({f / n:.0%})" for m, (f, n) in sorted(self.feedback_rates.items()))
            lines.append(f"feedback rate of answered decisions per model: {rates}")
        return lines

    def summary(self) -> str:
        if not (self.added or self.quarantined or self.already_present):
            return "\n".join(["nothing to ingest: no decision with feedback that was not ingested before",
                              *self.gateway_lines()])
        lines = [f"ingested {self.added} decision(s) with feedback ({self.first} .. {self.last}): "
                 f"{self.to_train} -> {TRAIN}, newest {self.to_holdout} -> {HOLDOUT} (the promotion gate's holdout)"]
        if self.quarantined:
            lines.append(f"quarantined {self.quarantined} bad row(s) with their reasons -> {self.quarantine_file}")
        if self.already_present:
            lines.append(f"{self.already_present} decision(s) were already in the logs: not added again")
        lines += self.gateway_lines() + self.notes
        if self.data_version:
            lines.append(f"data version (data.dvc): {self.data_version}")
        return "\n".join(lines)


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


def split_rows(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Valid rows and quarantined rows (with a ``reason``) under the observational-log contract;
    a batch is not a training set, so one row of one model is fine (``for_training=False``)."""
    from ..validation.contract import split_logs

    return split_logs(rows, for_training=False)


def _read(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.is_file() else None


def _write(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)  # readers never see half a file


def _merge(frames: list[pd.DataFrame], notes: list) -> pd.DataFrame:
    """Concatenate logs; an optional numeric column that would be partly missing is dropped (the
    nuisance models take token counts for every row or none)."""
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    for col in (S.INPUT_TOKENS, S.OUTPUT_TOKENS):
        if col in out and out[col].isna().any():
            notes.append(f"column {col!r} dropped from the merged logs: some rows lack it")
            out = out.drop(columns=col)
    if S.DATASET in out:
        out[S.DATASET] = out[S.DATASET].fillna(SERVED_DATASET)
    return out


def ingest(store, data_dir="data", holdout_fraction: float = 0.2, root=".", dvc: bool = True,
           holdout_max_rows: int | None = None, reward_wait_s: float = 86400.0) -> IngestReport:
    """Append the store's new decisions with feedback to the logs under ``data_dir``.

    Parameters
    ----------
    store : DecisionStore
    data_dir : path
        Holds ``train.parquet`` and ``holdout.parquet`` (created when missing).
    holdout_fraction : float in [0, 1)
        Share of the newest ingested rows that becomes the new holdout.
    root : path
        Project root: where ``data.dvc`` lives.
    dvc : bool
        Record the new data version with ``dvc add`` (skipped, with a note, outside a DVC repository).
    holdout_max_rows : int or None
        The holdout accumulates up to this many rows (the newest; older ones then train). None: each
        ingest's newest slice replaces the holdout and the previous holdout trains.
    reward_wait_s : float
        An answered gateway decision without feedback this many seconds after its answer goes to
        ``no_feedback.parquet`` (see the module docstring).

    Returns
    -------
    IngestReport
    """
    if not 0.0 <= float(holdout_fraction) < 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1), got {holdout_fraction}")
    if holdout_max_rows is not None and (isinstance(holdout_max_rows, bool) or int(holdout_max_rows) != holdout_max_rows
                                         or holdout_max_rows < 1):
        raise ValueError(f"holdout max rows must be a positive whole number or null, got {holdout_max_rows!r}")
    data_dir = Path(data_dir)
    report = IngestReport()
    pending = gateway_rows(store, store.pending(), report)
    report.no_feedback = log_missing_feedback(store, data_dir, reward_wait_s)
    report.feedback_rates = store.feedback_rates()
    if pending.empty:
        if dvc and report.no_feedback:
            report.data_version = record_data_version(root, data_dir)
        return report
    rows = decision_rows(pending)
    train, holdout, val = _read(data_dir / TRAIN), _read(data_dir / HOLDOUT), _read(data_dir / VAL)
    known = set()
    for f in (train, holdout, val):
        if f is not None and S.PROMPT_ID in f:
            known |= set(f[S.PROMPT_ID].astype(str))
    present = rows[S.PROMPT_ID].isin(known).to_numpy()
    report.already_present = int(present.sum())
    outcomes = {pid: ("added", "already in the logs") for pid in rows.loc[present, S.PROMPT_ID]}
    rows = rows.loc[~present].reset_index(drop=True)

    good, bad = split_rows(rows)
    if len(bad):
        qdir = data_dir / QUARANTINE
        qdir.mkdir(parents=True, exist_ok=True)
        stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S%fZ")
        qfile = qdir / f"ingest-{stamp}.parquet"
        _write(bad, qfile)
        report.quarantined, report.quarantine_file = len(bad), str(qfile)
        outcomes |= {pid: ("quarantined", reason) for pid, reason in zip(bad[S.PROMPT_ID], bad["reason"])}

    if len(good):
        good = good.sort_values([S.TIMESTAMP, S.PROMPT_ID], kind="stable").reset_index(drop=True)
        n_hold = min(len(good), math.ceil(holdout_fraction * len(good))) if holdout_fraction > 0 else 0
        new_hold, older = good.iloc[len(good) - n_hold:], good.iloc[: len(good) - n_hold]
        if n_hold == 0:  # keep the current holdout; everything new trains
            new_train, new_holdout = _merge([train, older], report.notes), holdout
        elif holdout_max_rows is None:  # the previous holdout has been scored once: it trains from now on
            new_train = _merge([train, holdout, older], report.notes)
            new_holdout = _merge([new_hold], report.notes)
        else:  # the holdout accumulates; its oldest rows beyond the cap train
            pooled = _merge([holdout, new_hold], report.notes)
            cut = max(0, len(pooled) - int(holdout_max_rows))
            new_train = _merge([train, pooled.iloc[:cut], older], report.notes)
            new_holdout = pooled.iloc[cut:].reset_index(drop=True)
        data_dir.mkdir(parents=True, exist_ok=True)
        _write(new_train, data_dir / TRAIN)
        if new_holdout is not None:
            _write(new_holdout, data_dir / HOLDOUT)
        report.added, report.to_train, report.to_holdout = len(good), len(older), n_hold
        report.first, report.last = str(good[S.TIMESTAMP].iloc[0]), str(good[S.TIMESTAMP].iloc[-1])
        outcomes |= {pid: ("added", None) for pid in good[S.PROMPT_ID]}

    # the logs are written before the store records them as ingested: a crash in between is
    # caught by the "already in the logs" check of the next run
    store.mark_ingested(outcomes)
    if dvc and (report.added or report.quarantined or report.no_feedback):
        report.data_version = record_data_version(root, data_dir)
        if report.data_version is None:
            report.notes.append(f"no DVC repository at {Path(root).resolve()}: data version not recorded")
    return report


def gateway_rows(store, pending: pd.DataFrame, report: IngestReport) -> pd.DataFrame:
    """``pending`` without the gateway's fallbacks (recorded as ingested, counted in ``report``), the
    answered decisions' token counts taken from their recorded call outcomes."""
    if pending.empty:
        return pending
    if "fallback_of" in pending:
        fb = pending["fallback_of"].notna().to_numpy()
        if fb.any():
            store.mark_ingested({d: ("fallback", f"fallback of {o}: no policy drew it")
                                 for d, o in zip(pending.loc[fb, "decision_id"], pending.loc[fb, "fallback_of"])})
            report.fallbacks = int(fb.sum())
            pending = pending.loc[~fb].reset_index(drop=True)
    found = store.outcomes_for(pending["decision_id"])
    if found:
        pending = pending.copy()
        for col in ("input_tokens", "output_tokens"):
            recorded = pending["decision_id"].map(lambda d, c=col: (found.get(d) or {}).get(c))
            pending[col] = recorded.where(recorded.notna(), pending[col])
    return pending


def log_missing_feedback(store, data_dir, reward_wait_s: float) -> int:
    """Append the answered decisions still without feedback ``reward_wait_s`` after their answer to
    ``<data_dir>/no_feedback.parquet`` and record them as ingested (``no_feedback``); returns how many."""
    from datetime import timedelta

    from .store import now

    waiting = store.awaiting_feedback(now() - timedelta(seconds=float(reward_wait_s)))
    if waiting.empty:
        return 0
    rows = decision_rows(waiting.assign(score=float("nan"), cost=waiting["out_cost"],
                                        input_tokens=waiting["out_input_tokens"].fillna(waiting["input_tokens"]),
                                        output_tokens=waiting["out_output_tokens"]))
    rows = rows.drop(columns=S.SCORE).assign(**{FEEDBACK_MISSING: True})
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    old = _read(data_dir / NO_FEEDBACK)
    known = set() if old is None else set(old[S.PROMPT_ID].astype(str))
    new = rows.loc[~rows[S.PROMPT_ID].isin(known)]
    _write(pd.concat([f for f in (old, new) if f is not None and len(f)], ignore_index=True), data_dir / NO_FEEDBACK)
    store.mark_ingested({d: ("no_feedback", f"no feedback within {reward_wait_s:g} s") for d in rows[S.PROMPT_ID]})
    return len(rows)


def record_data_version(root, data_dir) -> str | None:
    """``dvc add <data_dir>`` (updates ``data.dvc``); returns the folder's md5, or None outside DVC."""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    try:
        from dvc.repo import Repo

        repo = Repo(str(root))
    except Exception as exc:  # not a DVC repository
        log.warning("no DVC repository at %s (%s)", root, exc)
        return None
    target = os.path.relpath(Path(data_dir).resolve(), Path(root).resolve())
    with repo:
        stages = repo.add(target)
    outs = [o for s in (stages if isinstance(stages, list) else [stages]) for o in s.outs]
    return next((o.hash_info.value for o in outs if o.hash_info), None)


