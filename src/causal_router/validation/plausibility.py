"""Plausibility limits of outcome fields: one definition for the service (422) and ingest (quarantine).

A cost of ``1e308`` or ``10**18`` output tokens is a valid number and a certain mistake: once in the
logs it overflows training (``Input contains infinity``) or turns the gate's DR value into NaN. The
limits (``serve`` in params.yaml):

=================  ===========================================================================
limit              default
=================  ===========================================================================
``max_tokens``     1,000,000 tokens (input or output); at most 2**31 - 1, the decision log's
                   INTEGER range on PostgreSQL (SQLite's is 2**63 - 1)
``max_cost``       ``cost_factor`` (1,000) x the dearest model's cost of ``max_tokens`` input and
                   ``max_tokens`` output tokens, from the price sheet; 1,000 USD without one
=================  ===========================================================================

A score is always in [0, 1]. The service refuses values beyond the limits with 422; ingest's
contract (:mod:`.catalogue`: ``cost_plausible``, ``<tokens>_plausible``) quarantines a row that
slipped through (e.g. logged before the limits existed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_COST", "DEFAULT_MAX_TOKENS", "INT32_MAX", "Limits", "limits_from"]

INT32_MAX = 2**31 - 1
DEFAULT_MAX_TOKENS = 1_000_000
DEFAULT_COST_FACTOR = 1000.0
#: Without a price sheet.
DEFAULT_MAX_COST = 1000.0


@dataclass(frozen=True)
class Limits:
    """Largest plausible cost (USD) and token count."""

    max_cost: float = DEFAULT_MAX_COST
    max_tokens: int = DEFAULT_MAX_TOKENS

    def cost_error(self, cost) -> str | None:
        if cost is not None and not (math.isfinite(cost) and 0 <= cost <= self.max_cost):
            return f"cost must be a finite number in [0, {self.max_cost:g}] USD (the plausibility limit), got {cost:g}"
        return None

    def tokens_error(self, name: str, tokens) -> str | None:
        if tokens is not None and not (0 <= tokens <= self.max_tokens):
            return f"{name} must be a whole number in [0, {self.max_tokens}] (the plausibility limit), got {tokens}"
        return None


def limits_from(prices: dict | None, max_tokens: int = DEFAULT_MAX_TOKENS, max_cost: float | None = None,
                cost_factor: float = DEFAULT_COST_FACTOR) -> Limits:
    """The limits: ``max_cost`` when given, else derived from ``prices`` (``{model: (input, output)}`` USD
    per million tokens) as documented above."""
    max_tokens = min(int(max_tokens), INT32_MAX)
    if max_cost is None:
        dearest = max(((pin + pout) for pin, pout in (prices or {}).values()), default=0.0)
        max_cost = cost_factor * dearest * max_tokens / 1e6 if dearest > 0 else DEFAULT_MAX_COST
    return Limits(float(max_cost), max_tokens)
