"""The validate stage's report: one entry per catalogue check, JSON-ready."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from ..jsonable import jsonable, plain_value
from .checks import SHOW
from .contract import Assessment

__all__ = ["DataQualityReport", "jsonable"]


@dataclass
class DataQualityReport:
    """Outcome of validating one log (:func:`causal_router.validation.gx_suite.validate_logs_gx`).

    Attributes
    ----------
    success : bool
        False iff some check of severity ``"error"`` failed.
    results : list of dict
        One per catalogue check run: ``name``, ``column``, ``level``, ``success``, ``severity``
        (``"error"`` or ``"warning"``), ``unexpected_count``, ``unexpected_examples`` (at most 5
        distinct values), ``rows`` (positional indices at fault; empty for frame-level checks),
        ``message`` and ``gx`` (Great Expectations' verdict on the same check: ``{"success",
        "unexpected_count", "exception"}``, or None where GX has no such expectation).
    n_rows : int
    config : dict
    """

    success: bool
    results: list[dict]
    n_rows: int
    config: dict = field(default_factory=dict)

    @classmethod
    def from_assessment(cls, a: Assessment, df: pd.DataFrame, config: dict, gx: dict | None = None):
        gx = gx or {}
        failed = {p.check: p for p in a.problems}
        results = []
        for c in a.checks:
            p = failed.get(c.name)
            rows = list(p.rows) if p else []
            if p and not rows:  # frame-level: what is missing
                examples = list(p.items)
                count = len(examples)
            else:
                examples = [] if (not rows or not c.show_values) else _examples(
                    df[c.column.split(",")[0].strip()].iloc[rows[: SHOW * 20]])
                count = len(rows)
            results.append({
                "name": c.name, "column": (p.column if p else c.column), "level": c.level,
                "success": p is None, "severity": p.severity if p else "error",
                "unexpected_count": count, "unexpected_examples": examples, "rows": rows,
                "message": p.message if p else "", "gx": gx.get(c.name),
            })
        success = not a.errors
        return cls(success=success, results=results, n_rows=len(df), config=config)

    def failed(self, severity: str | None = None) -> list[dict]:
        """The failed checks, optionally only those of one severity (``"error"``/``"warning"``)."""
        return [r for r in self.results if not r["success"] and (severity is None or r["severity"] == severity)]

    def result(self, name: str) -> dict:
        """The result of the check called ``name``; KeyError if it was not run."""
        for r in self.results:
            if r["name"] == name:
                return r
        raise KeyError(f"no check named {name!r}; ran {[r['name'] for r in self.results]}")

    def to_dict(self) -> dict:
        """JSON-ready form (NaN becomes None, numpy scalars become Python ones)."""
        return jsonable({"success": self.success, "n_rows": self.n_rows, "n_checks": len(self.results),
                         "n_failed": len(self.failed()), "config": self.config, "results": self.results})

    def summary(self) -> str:
        """One header line, then one line per failed check."""
        bad = self.failed()
        if not bad:
            return f"observational log: {self.n_rows} rows, all {len(self.results)} checks passed"
        n_err = sum(r["severity"] == "error" for r in bad)
        head = (f"observational log: {self.n_rows} rows, {len(bad)} failed check(s) "
                f"({n_err} error(s), {len(bad) - n_err} warning(s))")
        return "\n".join([head] + [f"  - [{r['severity']}] {r['message']}" for r in bad])

    def __str__(self) -> str:
        return self.summary()


def _examples(values: Iterable) -> list:
    """First few distinct values, NaN-free and JSON-friendly."""
    out: list = []
    seen: set = set()
    for v in values:
        v = plain_value(v)
        if v is None:
            continue
        key = repr(v)
        if key in seen:
            continue
        seen.add(key)
        out.append(v)
        if len(out) == SHOW:
            break
    return out
