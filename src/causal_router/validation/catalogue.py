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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..data import schema as S
from ..errors import CausalRouterError

__all__ = [
    "Problem",
    "DataValidationError",
    "Check",
    "LogContract",
    "log_checks",
    "table_checks",
    "numeric",
    "SHOW",
]

SHOW = 5  # rows / values quoted per problem message
_PROPENSITY_ATOL = 1e-6
_TOKENS = (S.INPUT_TOKENS, S.OUTPUT_TOKENS)


@dataclass(frozen=True)
class Problem:
    """One failed check.

    Attributes
    ----------
    check : str
        The catalogue name, e.g. ``"score_range"``, ``"not_null:cost"``, ``"unique_prompt_id"``.
    column : str or None
        The column at fault (comma-separated when several).
    rows : tuple of int
        Positional indices of every row at fault; empty for frame-level problems.
    message : str
        Human-readable report: check, column, count, first rows and offending values.
    severity : {"error", "warning"}
        Warnings are reported but quarantine nothing and fail nothing.
    items : tuple
        Frame-level problems: what is missing or wrong (e.g. the absent columns or models).
    """

    check: str
    column: str | None
    rows: tuple[int, ...]
    message: str
    severity: str = "error"
    items: tuple = ()


class DataValidationError(CausalRouterError, ValueError):
    """Input data breaks its contract. ``.problems`` lists every failed check (errors first).

    ``.report`` is the :class:`~causal_router.validation.report.DataQualityReport` when the
    pipeline's validate stage raised it, else None.
    """

    def __init__(self, problems: list[Problem], what: str, report=None, hint: str | None = None):
        self.problems = list(problems)
        self.what = what
        self.report = report
        errors = [p for p in self.problems if p.severity == "error"]
        lines = [f"{what} failed validation: {len(errors)} problem(s)"]
        lines += [f"  - {'[warning] ' if p.severity == 'warning' else ''}{p.message}" for p in self.problems]
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class LogContract:
    """What a log is checked against.

    Attributes
    ----------
    models : tuple of str or None
        Configured models. When given, every logged model must be one of them (``model_in_set``)
        and each must have a row (``models_present``; only a warning unless ``require_all``).
    require_all : bool
        Whether a configured model without rows is an error (True) or a warning (False: the
        models come from a price sheet, and a model never served yet is still costed).
    positivity_floor : float
        Threshold of ``positivity_floor``.
    warn : frozenset of str
        Checks whose failure is only a warning.
    for_training : bool
        Run the kept-level checks (``has_rows``, ``several_models``, ``models_present``). A batch
        of freshly ingested rows is checked with False: one row of one model is a fine batch.
    """

    models: tuple[str, ...] | None = None
    require_all: bool = True
    positivity_floor: float = 1e-3
    warn: frozenset = frozenset({"positivity_floor"})
    for_training: bool = True

    @classmethod
    def make(cls, models=None, *, require_all=True, positivity_floor=1e-3, warn=("positivity_floor",),
             for_training=True) -> LogContract:
        """Build a contract, checking the options (a bad option raises ValueError/TypeError)."""
        if models is not None:
            if isinstance(models, str):
                raise TypeError("models must be a sequence of model names, not a single string")
            models = tuple(dict.fromkeys(str(m) for m in models))
            if not models:
                raise ValueError("models must name at least one model (or be None to skip the model checks)")
        floor = float(positivity_floor)
        if not 0 <= floor <= 1:
            raise ValueError(f"positivity_floor must be in [0, 1], got {positivity_floor}")
        warn = frozenset([warn] if isinstance(warn, str) else (warn or ()))
        return cls(models, bool(require_all), floor, warn, bool(for_training))

    def severity(self, name: str) -> str:
        if name in self.warn or (name == "models_present" and not self.require_all):
            return "warning"
        return "error"


@dataclass(frozen=True)
class Check:
    """One named check of the catalogue.

    Attributes
    ----------
    name : str
        Stable name: in messages, quarantine reasons, reports and the GX suite (``meta["name"]``).
    column : str or None
    level : {"row", "frame", "kept"}
    detail : str
        What the failing rows are, e.g. ``"outside [0, 1]"``.
    mask : callable (DataFrame) -> ndarray of bool, shape (n_rows,)
        Row-level checks: True where the row fails.
    missing : callable (DataFrame) -> list
        Frame- and kept-level checks: what is missing or wrong (empty when the check passes).
    expectation : callable (**kwargs) -> great_expectations Expectation, or None
        The same check as a Great Expectations expectation, where GX has one (kwargs such as
        ``severity`` are passed on).
    show_values : bool
        Quote the offending values in the message.
    """

    name: str
    column: str | None
    level: str
    detail: str
    mask: Callable[[pd.DataFrame], np.ndarray] | None = None
    missing: Callable[[pd.DataFrame], list] | None = None
    expectation: Callable[[], object] | None = field(default=None, compare=False)
    show_values: bool = True


# --------------------------------------------------------------------------- values


def _to_float(v) -> float:
    if isinstance(v, (bool, np.bool_)):
        return float(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        try:
            return float(v)
        except OverflowError:
            return math.inf if v > 0 else -math.inf
    if isinstance(v, (str, bytes)):
        try:
            return float(v)
        except ValueError:
            return math.nan
    return math.nan


def numeric(s: pd.Series) -> pd.Series:
    """A column as float, NaN where a value is missing or not a number (same index)."""
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_complex_dtype(s):
        return s.astype(float)
    return pd.Series([_to_float(v) for v in s.to_numpy(dtype=object)], index=s.index, dtype=float)


def _notna(s: pd.Series) -> np.ndarray:
    return s.notna().to_numpy(dtype=bool)


def _typed_text(s: pd.Series) -> bool:
    """A string-typed column (every non-missing value is a str), not a column of Python objects."""
    return s.dtype != object and pd.api.types.is_string_dtype(s)


def _not_text(s: pd.Series) -> np.ndarray:
    if _typed_text(s):
        return np.zeros(len(s), dtype=bool)
    values = s.to_numpy(dtype=object)
    return _notna(s) & ~np.fromiter((isinstance(v, str) for v in values), dtype=bool, count=len(values))


def as_text(s: pd.Series) -> pd.Series:
    """Ids as the loaders will cast them: non-str values as ``str(v)`` (missing values stay missing)."""
    if _typed_text(s):
        return s
    values = s.to_numpy(dtype=object)
    return pd.Series([v if isinstance(v, str) or v is None else str(v) for v in values], index=s.index,
                     dtype=object).where(s.notna(), None)


def _range_mask(column: str, ok: Callable[[np.ndarray], np.ndarray]):
    """Rows holding a number outside the range (missing and non-numeric values have checks of their own)."""

    def mask(df: pd.DataFrame) -> np.ndarray:
        x = numeric(df[column]).to_numpy()
        with np.errstate(invalid="ignore"):
            return ~np.isnan(x) & ~ok(x)

    return mask


def _gx(name: str, cls: str, **kwargs):
    def make(**extra):
        import great_expectations.expectations as gxe

        return getattr(gxe, cls)(meta={"name": name}, **kwargs, **extra)

    return make


# --------------------------------------------------------------------------- shared column checks


def _column_checks(columns: Iterable[str], required: Sequence[str], table: bool) -> list[Check]:
    present = set(columns)
    optional = [c for c in (S.PROPENSITY, *_TOKENS) if c in present]
    checks = [
        Check(f"not_null:{c}", c, "row", "are missing (NaN/None)", show_values=False,
              mask=lambda df, c=c: df[c].isna().to_numpy(dtype=bool),
              expectation=_gx(f"not_null:{c}", "ExpectColumnValuesToNotBeNull", column=c))
        for c in required
    ]
    # An optional column left entirely empty is as good as absent; partly empty, it breaks the
    # nuisance models (they refuse missing token counts on some rows only).
    checks += [
        Check(f"not_null:{c}", c, "row", "are missing (NaN/None) in a column that is filled elsewhere",
              show_values=False, mask=lambda df, c=c: _partly_missing(df[c]),
              expectation=_gx(f"not_null:{c}", "ExpectColumnValuesToNotBeNull", column=c))
        for c in optional
    ]
    checks.append(Check(
        "prompt_is_text", S.PROMPT, "row", "are not text",
        mask=lambda df: _not_text(df[S.PROMPT]),
        expectation=None))
    for c in (S.SCORE, S.COST, *optional):
        checks.append(Check(
            f"numeric:{c}", c, "row", "are not numbers",
            mask=lambda df, c=c: _notna(df[c]) & numeric(df[c]).isna().to_numpy(dtype=bool)))
    checks += [
        Check("score_range", S.SCORE, "row", "outside [0, 1]", mask=_range_mask(S.SCORE, lambda x: (x >= 0) & (x <= 1)),
              expectation=_gx("score_range", "ExpectColumnValuesToBeBetween", column=S.SCORE, min_value=0,
                              max_value=1)),
        Check("cost_nonnegative", S.COST, "row", "are negative", mask=_range_mask(S.COST, lambda x: x >= 0),
              expectation=_gx("cost_nonnegative", "ExpectColumnValuesToBeBetween", column=S.COST, min_value=0)),
        Check("cost_finite", S.COST, "row", "are infinite", mask=_range_mask(S.COST, np.isfinite),
              expectation=_gx("cost_finite", "ExpectColumnValuesToBeBetween", column=S.COST,
                              min_value=-np.finfo(float).max, max_value=np.finfo(float).max)),
    ]
    if S.PROPENSITY in present:
        if table:  # the logging policy's probability of every model: zero is allowed
            ok, detail, strict = (lambda x: (x >= 0) & (x <= 1)), "outside [0, 1]", False
        else:  # the probability of the model that was served: zero is impossible
            ok, detail, strict = (lambda x: (x > 0) & (x <= 1)), "outside (0, 1]", True
        checks.append(Check(
            "propensity_range", S.PROPENSITY, "row", detail, mask=_range_mask(S.PROPENSITY, ok),
            expectation=_gx("propensity_range", "ExpectColumnValuesToBeBetween", column=S.PROPENSITY, min_value=0,
                            max_value=1, strict_min=strict)))
    for c in (t for t in _TOKENS if t in present):
        checks.append(Check(
            f"{c}_range", c, "row", "are negative or infinite",
            mask=_range_mask(c, lambda x: np.isfinite(x) & (x >= 0)),
            expectation=_gx(f"{c}_range", "ExpectColumnValuesToBeBetween", column=c, min_value=0,
                            max_value=np.finfo(float).max)))
    return checks


def _columns_exist(required: Sequence[str]) -> Check:
    return Check(
        "columns_exist", None, "frame", "required column(s) absent",
        missing=lambda df: [c for c in required if c not in df.columns],
        expectation=_gx("columns_exist", "ExpectTableColumnsToMatchSet", column_set=list(required),
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
    complete = np.logical_and.reduce([_notna(df[k]) for k in keys])
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
    checks.append(Check(
        "unique_prompt_id", S.PROMPT_ID, "row", "repeat a prompt_id",
        mask=lambda df: _duplicated(df, [S.PROMPT_ID]),
        expectation=_gx("unique_prompt_id", "ExpectColumnValuesToBeUnique", column=S.PROMPT_ID)))
    models = contract.models
    if models is not None:
        names = list(models)
        checks.append(Check(
            "model_in_set", S.MODEL, "row", f"name a model not among the {len(names)} configured",
            mask=lambda df: _notna(df[S.MODEL]) & ~as_text(df[S.MODEL]).isin(names).to_numpy(dtype=bool),
            expectation=_gx("model_in_set", "ExpectColumnValuesToBeInSet", column=S.MODEL, value_set=names)))
    if contract.for_training:
        checks += [
            Check("has_rows", None, "kept", "no valid row to learn from",
                  missing=lambda df: [] if len(df) else ["0 valid rows"],
                  expectation=_gx("has_rows", "ExpectTableRowCountToBeBetween", min_value=1)),
            Check("several_models", S.MODEL, "kept", "fewer than two models logged: nothing to route between",
                  missing=_single_model,
                  expectation=_gx("several_models", "ExpectColumnUniqueValueCountToBeBetween", column=S.MODEL,
                                  min_value=2)),
        ]
        if models is not None:
            checks.append(Check(
                "models_present", S.MODEL, "kept", "configured model(s) have no valid logged row",
                missing=lambda df: [m for m in models if m not in _seen_models(df)],
                expectation=_gx("models_present", "ExpectColumnDistinctValuesToContainSet", column=S.MODEL,
                                value_set=list(models))))
    if S.PROPENSITY in columns:
        floor = contract.positivity_floor
        checks.append(Check(
            "positivity_floor", S.PROPENSITY, "row", f"below the positivity floor {floor:g}",
            mask=_range_mask(S.PROPENSITY, lambda x: x >= floor),
            expectation=_gx("positivity_floor", "ExpectColumnValuesToBeBetween", column=S.PROPENSITY,
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
    return ((total - 1).abs() > _PROPENSITY_ATOL).to_numpy(dtype=bool) & _notna(df[S.PROMPT_ID])


def _incomplete(df: pd.DataFrame) -> np.ndarray:
    pairs = df[[S.PROMPT_ID, S.MODEL]].dropna().astype(str)
    n_all = pairs[S.MODEL].nunique()
    n_models = pairs.groupby(S.PROMPT_ID, sort=False)[S.MODEL].nunique()
    short = n_models.index[n_models < n_all]
    return df[S.PROMPT_ID].astype(str).isin(short).to_numpy(dtype=bool) & _notna(df[S.PROMPT_ID])


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
