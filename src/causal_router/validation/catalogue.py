"""The data contract as one catalogue of named checks.

Every consumer (``causal-router validate``, the loaders in :mod:`causal_router.data.loaders`, the
pipeline's validate stage and its Great Expectations suite) runs the checks listed here, under these
names. A check is row-level (its failing rows can be quarantined), frame-level (about the frame as
a whole: nothing can be quarantined to fix it) or kept-level (a frame-level check on the rows that
pass the row-level checks, e.g. "at least two models left to route between").

Observational logs (:func:`log_checks`):

=============================  =====  ============================================================
name                           level  meaning
=============================  =====  ============================================================
``columns_exist``              frame  the required columns are all present
``not_null:<col>``             row    no missing value in a required column or a present optional one
``prompt_is_text``             row    ``prompt`` is a string
``numeric:<col>``              row    ``score``, ``cost``, ``propensity``, token counts are numbers
``score_range``                row    ``0 <= score <= 1``
``cost_nonnegative``           row    ``cost >= 0``
``cost_finite``                row    ``cost`` is not infinite
``propensity_range``           row    ``0 < propensity <= 1``
``input_tokens_range``         row    ``input_tokens`` is finite and ``>= 0`` (same for output)
``cost_plausible``             row    ``cost <= max_cost`` (when the contract sets it: ingest, from
                                      :mod:`.plausibility`)
``input_tokens_plausible``     row    ``input_tokens <= max_tokens`` (same for output; when set)
``unique_prompt_id``           row    ``prompt_id`` is unique (the first valid copy is kept)
``model_in_set``               row    the model is a configured one (when models are known)
``has_rows``                   kept   at least one valid row
``several_models``             kept   at least two models logged (a router needs a choice)
``models_present``             kept   each configured model has a valid row (a warning when
                                      the models come from a price sheet)
``positivity_floor``           row    ``propensity >= positivity_floor`` (a warning by default)
``propensities_vector``        row    ``propensities`` (where filled) is a JSON object of model ->
                                      probability in [0, 1] summing to 1, whose entry for the
                                      logged model equals ``propensity``
=============================  =====  ============================================================

Full-feedback tables (:func:`table_checks`) share the column checks and add ``unique_pair``
(one row per (prompt_id, model)), ``propensity_sum`` (per prompt) and ``complete_prompt`` (every
model answered every prompt); their ``propensity_range`` is ``[0, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from ..data import schema as S
from .checks import (
    Check,
    LogContract,
    as_text,
    expect,
    not_text,
    notna,
    numeric,
    range_mask,
)

__all__ = ["log_checks", "table_checks"]

_PROPENSITY_ATOL = 1e-6
_TOKENS = (S.INPUT_TOKENS, S.OUTPUT_TOKENS)


# --------------------------------------------------------------------------- shared column checks


def _plausibility_checks(columns: Iterable[str], contract: LogContract) -> list[Check]:
    present, checks = set(columns), []
    if contract.max_cost is not None:
        top = float(contract.max_cost)
        checks.append(Check(
            "cost_plausible", S.COST, "row", f"above the plausibility limit {top:g} USD",
            mask=range_mask(S.COST, lambda x, top=top: ~np.isfinite(x) | (x <= top)),
            expectation=expect("cost_plausible", "ExpectColumnValuesToBeBetween", column=S.COST, max_value=top)))
    if contract.max_tokens is not None:
        top = float(contract.max_tokens)
        for c in (t for t in _TOKENS if t in present):
            checks.append(Check(
                f"{c}_plausible", c, "row", f"above the plausibility limit {top:g} tokens",
                mask=range_mask(c, lambda x, top=top: ~np.isfinite(x) | (x <= top)),
                expectation=expect(f"{c}_plausible", "ExpectColumnValuesToBeBetween", column=c, max_value=top)))
    return checks


def _column_checks(columns: Iterable[str], required: Sequence[str], table: bool) -> list[Check]:
    present = set(columns)
    optional = [c for c in (S.PROPENSITY, *_TOKENS) if c in present]
    checks = [
        Check(f"not_null:{c}", c, "row", "are missing (NaN/None)", show_values=False,
              mask=lambda df, c=c: df[c].isna().to_numpy(dtype=bool),
              expectation=expect(f"not_null:{c}", "ExpectColumnValuesToNotBeNull", column=c))
        for c in required
    ]
    # An optional column left entirely empty is as good as absent; partly empty, it breaks the
    # nuisance models (they refuse missing token counts on some rows only).
    checks += [
        Check(f"not_null:{c}", c, "row", "are missing (NaN/None) in a column that is filled elsewhere",
              show_values=False, mask=lambda df, c=c: _partly_missing(df[c]),
              expectation=expect(f"not_null:{c}", "ExpectColumnValuesToNotBeNull", column=c))
        for c in optional
    ]
    checks.append(Check(
        "prompt_is_text", S.PROMPT, "row", "are not text",
        mask=lambda df: not_text(df[S.PROMPT]),
        expectation=None))
    for c in (S.SCORE, S.COST, *optional):
        checks.append(Check(
            f"numeric:{c}", c, "row", "are not numbers",
            mask=lambda df, c=c: notna(df[c]) & numeric(df[c]).isna().to_numpy(dtype=bool)))
    checks += [
        Check("score_range", S.SCORE, "row", "outside [0, 1]", mask=range_mask(S.SCORE, lambda x: (x >= 0) & (x <= 1)),
              expectation=expect("score_range", "ExpectColumnValuesToBeBetween", column=S.SCORE, min_value=0,
                              max_value=1)),
        Check("cost_nonnegative", S.COST, "row", "are negative", mask=range_mask(S.COST, lambda x: x >= 0),
              expectation=expect("cost_nonnegative", "ExpectColumnValuesToBeBetween", column=S.COST, min_value=0)),
        Check("cost_finite", S.COST, "row", "are infinite", mask=range_mask(S.COST, np.isfinite),
              expectation=expect("cost_finite", "ExpectColumnValuesToBeBetween", column=S.COST,
                              min_value=-np.finfo(float).max, max_value=np.finfo(float).max)),
    ]
    if S.PROPENSITY in present:
        if table:  # the logging policy's probability of every model: zero is allowed
            ok, detail, strict = (lambda x: (x >= 0) & (x <= 1)), "outside [0, 1]", False
        else:  # the probability of the model that was served: zero is impossible
            ok, detail, strict = (lambda x: (x > 0) & (x <= 1)), "outside (0, 1]", True
        checks.append(Check(
            "propensity_range", S.PROPENSITY, "row", detail, mask=range_mask(S.PROPENSITY, ok),
            expectation=expect("propensity_range", "ExpectColumnValuesToBeBetween", column=S.PROPENSITY, min_value=0,
                            max_value=1, strict_min=strict)))
    for c in (t for t in _TOKENS if t in present):
        checks.append(Check(
            f"{c}_range", c, "row", "are negative or infinite",
            mask=range_mask(c, lambda x: np.isfinite(x) & (x >= 0)),
            expectation=expect(f"{c}_range", "ExpectColumnValuesToBeBetween", column=c, min_value=0,
                            max_value=np.finfo(float).max)))
    return checks


def _columns_exist(required: Sequence[str]) -> Check:
    return Check(
        "columns_exist", None, "frame", "required column(s) absent",
        missing=lambda df: [c for c in required if c not in df.columns],
        expectation=expect("columns_exist", "ExpectTableColumnsToMatchSet", column_set=list(required),
                        exact_match=False))


def _seen_models(df: pd.DataFrame) -> set[str]:
    return {v if isinstance(v, str) else str(v) for v in pd.unique(df[S.MODEL].dropna())}


def _single_model(df: pd.DataFrame) -> list[str]:
    seen = _seen_models(df)
    return [] if len(seen) >= 2 or not len(df) else sorted(seen)


def _partly_missing(s: pd.Series) -> np.ndarray:
    na = s.isna().to_numpy(dtype=bool)
    return na & ~na.all()


def _duplicated(df: pd.DataFrame, keys: Sequence[str]) -> np.ndarray:
    """Rows whose (non-missing) key is repeated; ids compared as text, as the loaders cast them."""
    # plain Python objects: hashing them is several times faster than Arrow's factorize
    cols = [as_text(df[k]).to_numpy(dtype=object) for k in keys]
    complete = np.logical_and.reduce([notna(df[k]) for k in keys])
    if len(cols) == 1:
        dup = pd.Series(cols[0]).duplicated(keep=False).to_numpy(dtype=bool)
    else:
        dup = pd.DataFrame(dict(enumerate(cols))).duplicated(keep=False).to_numpy(dtype=bool)
    return dup & complete


# --------------------------------------------------------------------------- catalogues


def log_checks(columns: Iterable[str], contract: LogContract) -> list[Check]:
    """The checks of an observational log with these columns, in report order.

    Parameters
    ----------
    columns : iterable of str
        The frame's columns: checks of optional columns (``propensity``, token counts) are only
        run when the column is present.
    contract : LogContract

    Returns
    -------
    list of Check
    """
    columns = list(columns)
    checks = [_columns_exist(S.LOG_REQUIRED)]
    checks += _column_checks(columns, S.LOG_REQUIRED, table=False)
    checks += _plausibility_checks(columns, contract)
    checks.append(Check(
        "unique_prompt_id", S.PROMPT_ID, "row", "repeat a prompt_id",
        mask=lambda df: _duplicated(df, [S.PROMPT_ID]),
        expectation=expect("unique_prompt_id", "ExpectColumnValuesToBeUnique", column=S.PROMPT_ID)))
    models = contract.models
    if models is not None:
        names = list(models)
        checks.append(Check(
            "model_in_set", S.MODEL, "row", f"name a model not among the {len(names)} configured",
            mask=lambda df: notna(df[S.MODEL]) & ~as_text(df[S.MODEL]).isin(names).to_numpy(dtype=bool),
            expectation=expect("model_in_set", "ExpectColumnValuesToBeInSet", column=S.MODEL, value_set=names)))
    if contract.for_training:
        checks += [
            Check("has_rows", None, "kept", "no valid row to learn from",
                  missing=lambda df: [] if len(df) else ["0 valid rows"],
                  expectation=expect("has_rows", "ExpectTableRowCountToBeBetween", min_value=1)),
            Check("several_models", S.MODEL, "kept", "fewer than two models logged: nothing to route between",
                  missing=_single_model,
                  expectation=expect("several_models", "ExpectColumnUniqueValueCountToBeBetween", column=S.MODEL,
                                  min_value=2)),
        ]
        if models is not None:
            checks.append(Check(
                "models_present", S.MODEL, "kept", "configured model(s) have no valid logged row",
                missing=lambda df: [m for m in models if m not in _seen_models(df)],
                expectation=expect("models_present", "ExpectColumnDistinctValuesToContainSet", column=S.MODEL,
                                value_set=list(models))))
    if S.PROPENSITY in columns:
        floor = contract.positivity_floor
        checks.append(Check(
            "positivity_floor", S.PROPENSITY, "row", f"below the positivity floor {floor:g}",
            mask=range_mask(S.PROPENSITY, lambda x: x >= floor),
            expectation=expect("positivity_floor", "ExpectColumnValuesToBeBetween", column=S.PROPENSITY,
                            min_value=floor)))
    if S.PROPENSITIES in columns:
        checks.append(Check(
            "propensities_vector", S.PROPENSITIES, "row",
            "are not a JSON object of probabilities summing to 1 that gives the logged model its propensity",
            mask=_bad_vectors, expectation=None))
    return checks


def _bad_vector(text, model, propensity) -> bool:
    import json

    if text is None or (isinstance(text, float) and math.isnan(text)):
        return False  # logs from before the vector was recorded
    try:
        vector = json.loads(text) if isinstance(text, str) else None
        probs = [float(p) for p in vector.values()] if isinstance(vector, dict) else None
    except (ValueError, TypeError):
        return True
    if not probs or any(not (0.0 <= p <= 1.0) for p in probs) or abs(sum(probs) - 1.0) > _PROPENSITY_ATOL:
        return True
    own = vector.get(str(model))
    if own is None:
        return True
    return propensity is not None and math.isfinite(propensity) and abs(float(own) - propensity) > _PROPENSITY_ATOL


def _bad_vectors(df: pd.DataFrame) -> np.ndarray:
    prop = numeric(df[S.PROPENSITY]).to_numpy() if S.PROPENSITY in df else np.full(len(df), np.nan)
    return np.array([_bad_vector(v, m, p) for v, m, p in zip(df[S.PROPENSITIES].tolist(), df[S.MODEL].tolist(), prop)],
                    dtype=bool)


def _propensity_sum(df: pd.DataFrame) -> np.ndarray:
    p = numeric(df[S.PROPENSITY])
    # Surplus duplicate pairs are reported on their own; don't let them also break the sum.
    once = p.where(~df[[S.PROMPT_ID, S.MODEL]].astype(str).duplicated(), 0.0)
    total = once.groupby(df[S.PROMPT_ID].astype(str).to_numpy()).transform("sum")
    return ((total - 1).abs() > _PROPENSITY_ATOL).to_numpy(dtype=bool) & notna(df[S.PROMPT_ID])


def _incomplete(df: pd.DataFrame) -> np.ndarray:
    pairs = df[[S.PROMPT_ID, S.MODEL]].dropna().astype(str)
    n_all = pairs[S.MODEL].nunique()
    n_models = pairs.groupby(S.PROMPT_ID, sort=False)[S.MODEL].nunique()
    short = n_models.index[n_models < n_all]
    return df[S.PROMPT_ID].astype(str).isin(short).to_numpy(dtype=bool) & notna(df[S.PROMPT_ID])


def table_checks(columns: Iterable[str]) -> list[Check]:
    """The checks of a full-feedback table (one row per (prompt_id, model)) with these columns."""
    columns = list(columns)
    checks = [_columns_exist(S.TABLE_REQUIRED)]
    checks += _column_checks(columns, S.TABLE_REQUIRED, table=True)
    if S.PROPENSITY in columns:
        checks.append(Check("propensity_sum", S.PROPENSITY, "prompt", "whose propensities do not sum to 1",
                            mask=_propensity_sum))
    checks.append(Check("unique_pair", f"{S.PROMPT_ID}, {S.MODEL}", "row", "repeat a (prompt_id, model) pair",
                        mask=lambda df: _duplicated(df, [S.PROMPT_ID, S.MODEL])))
    checks.append(Check("complete_prompt", S.MODEL, "prompt", "lack some model", mask=_incomplete))
    return checks
