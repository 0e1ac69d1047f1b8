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
and one round's slice (60 rows in the loop study) held too few of them to ever promote. The holdout forgets
when the world changes (``change_z``, :mod:`causal_router.serving.forget`): when a model's inverse-propensity
weighted mean score in the new rows differs from that of the holdout's period by more than ``change_z`` standard errors,
the old holdout trains and the holdout restarts with this ingest's slice. The data folder's new version
is recorded with DVC (``data.dvc``). A second run adds nothing: ingested decisions are recorded
in the store, and decision ids already in the logs are never added twice.

An ingest is a transaction (:mod:`causal_router.serving.journal`): a kill at any point leaves the old
state or one the next run completes (files, ``data.dvc``, the store's bookkeeping), nothing lost,
doubled or stale. Train and holdout never share a prompt id. Rows above the plausibility limits
(:mod:`causal_router.validation.plausibility`) are quarantined; quarantined decisions stay listed in the
store (``causal-router ingest --list-quarantined``) and are validated again after a fix
(``--retry-quarantined``). Feedback may carry a cost or token counts, decision by decision: a token
column only some new rows have is left out of that ingest (with a note) instead of quarantining the
rest.

Decisions the gateway answered keep their recorded call outcome, fallbacks never become log rows,
and answered decisions without feedback past ``reward_wait_s`` go to ``no_feedback.parquet``, all
inside the same transaction (:mod:`causal_router.serving.ingest_gateway`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..data import schema as S
from .forget import period, shifts
from .logrows import (
    FEEDBACK_MISSING,
    HOLDOUT,
    NO_FEEDBACK,
    QUARANTINE,
    SERVED_DATASET,
    TRAIN,
    VAL,
    decision_rows,
    read_log,
)

log = logging.getLogger(__name__)



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
            lines = ["nothing to ingest: no decision with feedback that was not ingested before",
                     *self.gateway_lines(), *self.notes]
            if self.data_version:
                lines.append(f"data version (data.dvc): {self.data_version}")
            return "\n".join(lines)
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


def split_rows(rows: pd.DataFrame, limits=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Valid rows and quarantined rows (with a ``reason``) under the observational-log contract and the
    plausibility ``limits``; a batch is not a training set, so one row of one model is fine
    (``for_training=False``)."""
    from ..validation.contract import split_logs

    return split_logs(rows, for_training=False, limits=limits)


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
           holdout_max_rows: int | None = None, limits=None, force: bool = False,
           reward_wait_s: float = 86400.0, change_z: float | None = None,
           change_min_rows: int = 30) -> IngestReport:
    """Append the store's new decisions with feedback to the logs under ``data_dir``, as one transaction.

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
        With ``dvc``, a ``data_dir`` outside ``root`` or other than the folder ``data.dvc`` tracks is
        refused (:class:`IngestRefused`) unless ``force``.
    holdout_max_rows : int or None
        The holdout accumulates up to this many rows (the newest; older ones then train). None: each
        ingest's newest slice replaces the holdout and the previous holdout trains.
    limits : :class:`~causal_router.validation.plausibility.Limits` or None
        Plausibility limits of cost and token counts (None: the defaults); rows above them are quarantined.
    force : bool
        Ingest into a folder that is not the one ``data.dvc`` tracks.
    reward_wait_s : float
        An answered gateway decision without feedback this many seconds after its answer goes to
        ``no_feedback.parquet`` (see the module docstring).
    change_z, change_min_rows : float or None, int
        The holdout restarts (its rows train) when a model with at least ``change_min_rows`` rows on each
        side has a mean score in the new rows ``change_z`` standard errors from the holdout's
        (:func:`causal_router.serving.forget.shifts`); None: never.

    Returns
    -------
    IngestReport

    Notes
    -----
    The transaction (:mod:`causal_router.serving.journal`): every new file is written beside its
    target first; then a journal naming the replacements and the decisions' outcomes is written (the
    commit point); then the files are moved into place, ``dvc add`` records the data version, the
    store marks the decisions ingested, and the journal is removed. A kill before the journal leaves
    the old state; after it, the next run finishes the journal's work before anything else.
    """
    from ..validation.plausibility import Limits
    from .ingest_gateway import gateway_rows, stage_missing_feedback
    from .journal import Journal, check_data_dir

    if not 0.0 <= float(holdout_fraction) < 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1), got {holdout_fraction}")
    if holdout_max_rows is not None and (isinstance(holdout_max_rows, bool) or int(holdout_max_rows) != holdout_max_rows
                                         or holdout_max_rows < 1):
        raise ValueError(f"holdout max rows must be a positive whole number or null, got {holdout_max_rows!r}")
    data_dir = Path(data_dir)
    if dvc:
        check_data_dir(root, data_dir, force)
    report = IngestReport()
    journal = Journal(data_dir)
    if journal.pending():
        report.data_version = journal.finish(store, root, dvc, record_data_version)
        report.notes.append(f"completed an interrupted ingest ({journal.path.name}): its files, data version and "
                            "bookkeeping are now in place")
    else:
        journal.clean()  # files of an ingest killed before its commit point
    outcomes: dict = {}
    pending = gateway_rows(store, store.pending(), report, outcomes)
    report.no_feedback = stage_missing_feedback(store, data_dir, reward_wait_s, journal, outcomes)
    report.feedback_rates = store.feedback_rates()
    if pending.empty and not outcomes:
        return report
    rows = decision_rows(pending)
    train, holdout, val = read_log(data_dir / TRAIN), read_log(data_dir / HOLDOUT), read_log(data_dir / VAL)
    known = set()
    for f in (train, holdout, val):
        if f is not None and S.PROMPT_ID in f:
            known |= set(f[S.PROMPT_ID].astype(str))
    present = rows[S.PROMPT_ID].isin(known).to_numpy()
    report.already_present = int(present.sum())
    outcomes |= {pid: ("added", "already in the logs") for pid in rows.loc[present, S.PROMPT_ID]}
    rows = rows.loc[~present].reset_index(drop=True)
    rows = _drop_partial_tokens(rows, report.notes)

    good, bad = split_rows(rows, limits or Limits())
    if len(bad):
        stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S%fZ")
        qfile = data_dir / QUARANTINE / f"ingest-{stamp}.parquet"
        journal.stage(bad, qfile)
        report.quarantined, report.quarantine_file = len(bad), str(qfile)
        outcomes |= {pid: ("quarantined", reason) for pid, reason in zip(bad[S.PROMPT_ID], bad["reason"])}

    if len(good):
        good = good.sort_values([S.TIMESTAMP, S.PROMPT_ID], kind="stable").reset_index(drop=True)
        n_hold = min(len(good), math.ceil(holdout_fraction * len(good))) if holdout_fraction > 0 else 0
        new_hold, older = good.iloc[len(good) - n_hold:], good.iloc[: len(good) - n_hold]
        shifted = [] if change_z is None or n_hold == 0 else shifts(period(holdout, train, val), good, change_z,
                                                                               change_min_rows)
        if shifted:
            report.notes.append("the outcomes changed (mean score, holdout -> new rows: "
                                f"{'; '.join(map(str, shifted))}): the holdout restarts with the newest "
                                f"{n_hold} row(s), its {0 if holdout is None else len(holdout)} older row(s) train")
            log.warning(report.notes[-1])
        if n_hold == 0:  # keep the current holdout; everything new trains
            new_train, new_holdout = _merge([train, older], report.notes), holdout
        elif holdout_max_rows is None or shifted:  # the previous holdout (scored, or of a world gone) trains
            new_train = _merge([train, holdout, older], report.notes)
            new_holdout = _merge([new_hold], report.notes)
        else:  # the holdout accumulates; its oldest rows beyond the cap train
            pooled = _merge([holdout, new_hold], report.notes)
            cut = max(0, len(pooled) - int(holdout_max_rows))
            new_train = _merge([train, pooled.iloc[:cut], older], report.notes)
            new_holdout = pooled.iloc[cut:].reset_index(drop=True)
        new_holdout = _disjoint(new_train, new_holdout, report.notes)
        # the holdout moves into place first: a kill between the two moves leaves rows missing from both
        # (until the rerun), never a row in both (the gate would score rows a challenger trained on)
        if new_holdout is not None:
            journal.stage(new_holdout, data_dir / HOLDOUT)
        journal.stage(new_train, data_dir / TRAIN)
        report.added, report.to_train, report.to_holdout = len(good), len(older), n_hold
        report.first, report.last = str(good[S.TIMESTAMP].iloc[0]), str(good[S.TIMESTAMP].iloc[-1])
        outcomes |= {pid: ("added", None) for pid in good[S.PROMPT_ID]}

    # the commit point; then files into place, dvc add, the store's bookkeeping (a rerun finishes them)
    changed = bool(report.added or report.quarantined or report.no_feedback)
    journal.commit(outcomes, dvc=bool(dvc and changed))
    version = journal.finish(store, root, dvc, record_data_version)
    report.data_version = version or report.data_version
    if dvc and changed and version is None:
        report.notes.append(f"no DVC repository at {Path(root).resolve()}: data version not recorded")
    return report


def limits_for(root=".", params=None):
    """The plausibility limits of ``serve`` in ``<root>/params.yaml`` (or ``params``) and its price sheet;
    the defaults without a params file (:mod:`causal_router.validation.plausibility`)."""
    from ..settings.params import ServeSettings
    from ..settings.prices import load_prices
    from ..validation.plausibility import limits_from

    path = Path(params) if params else Path(root) / "params.yaml"
    if not path.is_file():
        return limits_from(None)
    s = ServeSettings.from_params(path)
    sheet = s.price_sheet(root)
    prices = load_prices(sheet) if sheet is not None and sheet.is_file() else None
    return limits_from(prices, s.max_tokens, s.max_cost, s.cost_factor)


def _drop_partial_tokens(rows: pd.DataFrame, notes: list) -> pd.DataFrame:
    """Feedback may carry ``cost`` or ``output_tokens``: a token column some new rows lack is left out of
    this batch (with a note) rather than quarantining the rows without it."""
    for col in (S.INPUT_TOKENS, S.OUTPUT_TOKENS):
        if col in rows and rows[col].isna().any() and rows[col].notna().any():
            notes.append(f"column {col!r} left out of this ingest: {int(rows[col].isna().sum())} of {len(rows)} "
                         "decision(s) lack it (feedback with a cost instead of token counts)")
            rows = rows.drop(columns=col)
    return rows


def _disjoint(train: pd.DataFrame, holdout: pd.DataFrame | None, notes: list) -> pd.DataFrame | None:
    """The holdout without prompt ids the training logs hold (the gate must not score trained rows)."""
    if holdout is None or not len(holdout) or S.PROMPT_ID not in train:
        return holdout
    shared = holdout[S.PROMPT_ID].astype(str).isin(set(train[S.PROMPT_ID].astype(str))).to_numpy()
    if shared.any():
        notes.append(f"{int(shared.sum())} holdout row(s) whose prompt_id the training logs hold were removed "
                     "from the holdout")
        holdout = holdout.loc[~shared].reset_index(drop=True)
    return holdout


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
    dvcfile = Path(root) / f"{target}.dvc"
    try:  # a .dvc file torn by a kill in the middle of the last dvc add is rewritten
        import yaml

        yaml.safe_load(dvcfile.read_text()) if dvcfile.is_file() else None
    except (yaml.YAMLError, UnicodeDecodeError):
        dvcfile.unlink()
    with repo, contextlib.chdir(Path(root).resolve()):  # DVC resolves the target from the current folder
        stages = repo.add(target)
    outs = [o for s in (stages if isinstance(stages, list) else [stages]) for o in s.outs]
    return next((o.hash_info.value for o in outs if o.hash_info), None)


