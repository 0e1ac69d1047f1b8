"""What a check is and what it reports: :class:`Check`, :class:`Problem`, :class:`DataValidationError`,
:class:`LogContract`, and how values are read (numbers, text) by every check of :mod:`.catalogue`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import CausalRouterError

SHOW = 5  # rows / values quoted per problem message


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
    max_cost, max_tokens : float or None
        Plausibility limits (:mod:`causal_router.validation.plausibility`): ``cost_plausible`` and
        ``<tokens>_plausible`` quarantine rows above them (None: not checked).
    """

    models: tuple[str, ...] | None = None
    require_all: bool = True
    positivity_floor: float = 1e-3
    warn: frozenset = frozenset({"positivity_floor"})
    for_training: bool = True
    max_cost: float | None = None
    max_tokens: float | None = None

    @classmethod
    def make(cls, models=None, *, require_all=True, positivity_floor=1e-3, warn=("positivity_floor",),
             for_training=True, max_cost=None, max_tokens=None) -> LogContract:
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
        return cls(models, bool(require_all), floor, warn, bool(for_training),
                   None if max_cost is None else float(max_cost), None if max_tokens is None else float(max_tokens))

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


def to_float(v) -> float:
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
    return pd.Series([to_float(v) for v in s.to_numpy(dtype=object)], index=s.index, dtype=float)


def notna(s: pd.Series) -> np.ndarray:
    return s.notna().to_numpy(dtype=bool)


def typed_text(s: pd.Series) -> bool:
    """A string-typed column (every non-missing value is a str), not a column of Python objects."""
    return s.dtype != object and pd.api.types.is_string_dtype(s)


def not_text(s: pd.Series) -> np.ndarray:
    if typed_text(s):
        return np.zeros(len(s), dtype=bool)
    values = s.to_numpy(dtype=object)
    return notna(s) & ~np.fromiter((isinstance(v, str) for v in values), dtype=bool, count=len(values))


def as_text(s: pd.Series) -> pd.Series:
    """Ids as the loaders will cast them: non-str values as ``str(v)`` (missing values stay missing)."""
    if typed_text(s):
        return s
    values = s.to_numpy(dtype=object)
    return pd.Series([v if isinstance(v, str) or v is None else str(v) for v in values], index=s.index,
                     dtype=object).where(s.notna(), None)


def range_mask(column: str, ok: Callable[[np.ndarray], np.ndarray]):
    """Rows holding a number outside the range (missing and non-numeric values have checks of their own)."""

    def mask(df: pd.DataFrame) -> np.ndarray:
        x = numeric(df[column]).to_numpy()
        with np.errstate(invalid="ignore"):
            return ~np.isnan(x) & ~ok(x)

    return mask


def expect(name: str, cls: str, **kwargs):
    def make(**extra):
        import great_expectations.expectations as gxe

        return getattr(gxe, cls)(meta={"name": name}, **kwargs, **extra)

    return make
