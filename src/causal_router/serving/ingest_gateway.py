"""The gateway's part of an ingest: fallbacks kept out of the logs, recorded call outcomes' token
counts, and answered decisions without feedback staged to ``no_feedback.parquet``; every outcome goes
through the ingest's journal (:mod:`causal_router.serving.journal`), so a kill loses none of them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..data import schema as S
from .logrows import FEEDBACK_MISSING, NO_FEEDBACK, decision_rows, read_log


def gateway_rows(store, pending: pd.DataFrame, report, outcomes: dict) -> pd.DataFrame:
    """``pending`` without the gateway's fallbacks (their outcome ``fallback`` added to ``outcomes``, which
    the ingest's journal records; counted in ``report``), the answered decisions' token counts taken from
    their recorded call outcomes."""
    if pending.empty:
        return pending
    if "fallback_of" in pending:
        fb = pending["fallback_of"].notna().to_numpy()
        if fb.any():
            outcomes |= {d: ("fallback", f"fallback of {o}: no policy drew it")
                         for d, o in zip(pending.loc[fb, "decision_id"], pending.loc[fb, "fallback_of"])}
            report.fallbacks = int(fb.sum())
            pending = pending.loc[~fb].reset_index(drop=True)
    found = store.outcomes_for(pending["decision_id"])
    if found:
        pending = pending.copy()
        for col in ("input_tokens", "output_tokens"):
            recorded = pending["decision_id"].map(lambda d, c=col: (found.get(d) or {}).get(c))
            pending[col] = recorded.where(recorded.notna(), pending[col])
    return pending


def stage_missing_feedback(store, data_dir, reward_wait_s: float, journal, outcomes: dict) -> int:
    """Stage ``<data_dir>/no_feedback.parquet`` with the answered decisions still without feedback
    ``reward_wait_s`` after their answer (in ``journal``), their outcome ``no_feedback`` added to
    ``outcomes``; returns how many."""
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
    old = read_log(data_dir / NO_FEEDBACK)
    known = set() if old is None else set(old[S.PROMPT_ID].astype(str))
    new = rows.loc[~rows[S.PROMPT_ID].isin(known)]
    journal.stage(pd.concat([f for f in (old, new) if f is not None and len(f)], ignore_index=True),
                  data_dir / NO_FEEDBACK)
    outcomes |= {d: ("no_feedback", f"no feedback within {reward_wait_s:g} s") for d in rows[S.PROMPT_ID]}
    return len(rows)
