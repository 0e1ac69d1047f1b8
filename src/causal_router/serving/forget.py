"""A holdout that forgets: the gate's evidence restarts when a model's outcomes change.

The promotion gate scores challengers on the holdout (``serving/ingest.py``), which accumulates so that the
gate has rows where two routers disagree. After a provider changes a model behind the same name, the
accumulated rows describe a world that is gone: a challenger fitted to the new world is judged mostly on old
rows, and the champion keeps serving the changed model (the loop-change study's ``degrade``).

Each ingest therefore compares, model by model, the mean score of the newly ingested rows with that of the
logs of the holdout's period (every row, training or held out, logged since the holdout's oldest row: the
holdout is the newest slice of each ingest, so the rows of its period are several times its size and the test
has that much more power; after a restart the period begins at the change). Both means are inverse-propensity
weighted (self-normalised, each row weighted ``1 / propensity``, the probability the served policy drew that
model with), so each estimates the model's mean score over the whole prompt distribution, whatever policy
logged the rows: in a stationary world the two agree up to noise, however the router changed between them.
When a model's two means differ by more than ``z`` standard errors (delta-method variance of the self-
normalised estimates, at least ``min_rows`` effective rows of the model on each side, Kish's ``(sum w)^2 / sum
w^2``), the holdout restarts: its old
rows train, and the gate judges on rows logged since the change only. Every holdout row keeps its logged
propensities, so the doubly robust evidence on that subset is still unbiased for the world as it is now.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data import schema as S

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shift:
    """One model's change of mean score between the holdout (``before``) and the new rows (``after``)."""

    model: str
    before: float
    after: float
    z: float

    def __str__(self) -> str:
        return f"{self.model} {self.before:.3f} -> {self.after:.3f} (z {self.z:+.1f})"


def weighted_mean(rows: pd.DataFrame) -> tuple[float, float, float]:
    """(self-normalised IPS mean score, its variance, effective rows) of one model's logged rows; the
    effective rows are Kish's ``(sum w)^2 / sum w^2``: a few rows drawn with a small probability weigh as
    much as many drawn by the router's choice, and the delta-method variance is not to be trusted on them."""
    w = 1.0 / rows[S.PROPENSITY].to_numpy(dtype=float)
    r = rows[S.SCORE].to_numpy(dtype=float)
    mu = float((w * r).sum() / w.sum())
    return mu, float((w ** 2 * (r - mu) ** 2).sum() / w.sum() ** 2), float(w.sum() ** 2 / (w ** 2).sum())


def period(holdout: pd.DataFrame | None, *others: pd.DataFrame | None) -> pd.DataFrame | None:
    """The logs of the holdout's period: its rows and those of ``others`` (train, val) logged at or after its
    oldest row (the holdout alone when a frame lacks timestamps)."""
    if holdout is None or not len(holdout) or S.TIMESTAMP not in holdout:
        return holdout
    start = pd.to_datetime(holdout[S.TIMESTAMP], utc=True).min()
    parts = [holdout]
    for f in others:
        if f is not None and len(f) and S.TIMESTAMP in f:
            parts.append(f.loc[(pd.to_datetime(f[S.TIMESTAMP], utc=True) >= start).to_numpy()])
    return pd.concat(parts, ignore_index=True)


def shifts(holdout: pd.DataFrame | None, new: pd.DataFrame, z: float, min_rows: int) -> list[Shift]:
    """The models whose mean score differs between ``holdout`` (the logs of its period, :func:`period`) and
    ``new`` rows by more than ``z`` standard errors (both sides with at least ``min_rows`` effective rows of
    the model, :func:`weighted_mean`, and logged propensities in (0, 1])."""
    if holdout is None or not len(holdout) or not len(new):
        return []
    if any(S.PROPENSITY not in f for f in (holdout, new)):
        return []
    out = []

    def usable(f):
        p = pd.to_numeric(f[S.PROPENSITY], errors="coerce")
        return f.loc[(p > 0) & (p <= 1) & pd.to_numeric(f[S.SCORE], errors="coerce").notna()]

    old, recent = usable(holdout), usable(new)
    for m in sorted(set(old[S.MODEL].astype(str)) & set(recent[S.MODEL].astype(str))):
        a, b = old.loc[old[S.MODEL].astype(str) == m], recent.loc[recent[S.MODEL].astype(str) == m]
        (mu_a, v_a, n_a), (mu_b, v_b, n_b) = weighted_mean(a), weighted_mean(b)
        if min(n_a, n_b) < max(int(min_rows), 2):
            continue
        se, d = float(np.sqrt(v_a + v_b)), mu_b - mu_a
        shift = Shift(m, mu_a, mu_b, d / se if se > 0 else float(np.sign(d) * np.inf) if d else 0.0)
        log.info("holdout period -> new rows: %s (%d -> %d rows, effective %.0f -> %.0f)", shift, len(a), len(b),
                 n_a, n_b)
        if abs(shift.z) > z:  # se 0: constant scores on each side, different means (z infinite)
            out.append(shift)
    return out
