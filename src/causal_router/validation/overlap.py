"""Overlap (positivity) diagnostics of an observational log.

Off-policy estimates weight each logged row by ``1 / propensity``; a model that the logging
policy rarely chose gets few rows with huge weights, and its estimated value is then mostly noise.
:func:`overlap_report` shows, per model, how many rows back it and how concentrated their weights
are (effective sample size, ESS).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..data import schema as S

__all__ = ["OVERLAP_COLUMNS", "overlap_report", "effective_sample_size"]

OVERLAP_COLUMNS = (
    "model",
    "n_logged",
    "share",
    "min_propensity",
    "median_propensity",
    "fraction_below_floor",
    "ess",
)


def effective_sample_size(weights) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` (0 for no weights)."""
    w = np.asarray(weights, dtype=float)
    if w.size == 0:
        return 0.0
    sq = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / sq if sq > 0 else 0.0


def overlap_report(logs: pd.DataFrame, models: Sequence[str] | None = None, floor: float = 1e-3) -> pd.DataFrame:
    """Per-model overlap statistics of an observational log.

    Parameters
    ----------
    logs : DataFrame, shape (n_rows, n_columns)
        Needs a ``model`` column; uses ``propensity`` when present.
    models : sequence of str, optional
        Candidate models, reported in this order (with ``n_logged`` 0 when never logged). Logged
        models not among them are appended, so that ``share`` sums to 1 over the rows. Default:
        the logged models, sorted.
    floor : float
        Propensity threshold of ``fraction_below_floor``.

    Returns
    -------
    DataFrame, one row per model, columns :data:`OVERLAP_COLUMNS`
        ``n_logged`` rows where the model answered; ``share`` = ``n_logged / n_rows`` (NaN for an
        empty log); ``min_propensity``, ``median_propensity`` and ``fraction_below_floor`` (share
        of rows with ``propensity < floor``) over the rows with a usable propensity; ``ess`` the
        effective sample size of the inverse-propensity weights ``1 / propensity`` over those rows
        (0 for a model without rows). Without a ``propensity`` column the propensity statistics
        and ``ess`` are NaN. Rows whose propensity is missing, non-numeric or not positive are
        left out of the propensity statistics (the validation suite reports them).
    """
    if S.MODEL not in logs.columns:
        raise ValueError(f"overlap_report needs a {S.MODEL!r} column; found {list(logs.columns)}")
    logged = logs[S.MODEL]
    names = list(dict.fromkeys(models)) if models is not None else sorted(logged.dropna().unique(), key=str)
    if models is not None:
        known = set(names)
        names += sorted((m for m in logged.dropna().unique() if m not in known), key=str)

    has_p = S.PROPENSITY in logs.columns
    prop = pd.to_numeric(logs[S.PROPENSITY], errors="coerce").astype(float).to_numpy() if has_p else None
    model_values = logged.to_numpy(dtype=object)
    n_total = len(logs)

    rows = []
    for name in names:
        mask = model_values == name
        n = int(mask.sum())
        row = {
            "model": name,
            "n_logged": n,
            "share": n / n_total if n_total else float("nan"),
            "min_propensity": float("nan"),
            "median_propensity": float("nan"),
            "fraction_below_floor": float("nan"),
            "ess": float("nan"),
        }
        if has_p:
            p = prop[mask]
            p = p[np.isfinite(p) & (p > 0)]
            row["ess"] = effective_sample_size(1.0 / p)
            if p.size:
                row.update(
                    min_propensity=float(p.min()),
                    median_propensity=float(np.median(p)),
                    fraction_below_floor=float(np.mean(p < floor)),
                )
        rows.append(row)
    out = pd.DataFrame(rows, columns=list(OVERLAP_COLUMNS))
    return out.astype({"n_logged": "int64", **{c: "float64" for c in OVERLAP_COLUMNS[2:]}})
