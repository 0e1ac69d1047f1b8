"""Change in the simulated deployment (``causal-router loop --scenario NAME``): the world a round sees.

From round :data:`CHANGE_ROUND` (3) on, the table's outcomes, prices or served pool change:

- ``none``: nothing changes (a stationary world);
- ``new-model``: the model with the highest mean utility at the loop's lambda is out of the pool (and of the
  incumbent's draws) in rounds 0-2 and joins at round 3, with no logs (the service's cold-start share);
- ``degrade``: the model the champion sent the most traffic to in round 2 answers, from round 3 on, as the
  weakest model of the table does (the lowest mean score; the next weakest when it is the weakest itself):
  its scores on each prompt become that model's on the same prompt, its costs stay its own (same name, same
  price: the provider changed the model behind it);
- ``price``: the model with the highest mean cost costs a third from round 3 on (its outcomes' costs and its
  price sheet entry);
- ``partial-feedback-a`` / ``-b``: only 30% of the decisions get a score, in ``a`` at random, in ``b`` a low
  score (below 0.5) three times as likely to be reported as a high one (the rates chosen per round so that 30%
  of that round's decisions are reported). A decision without a score follows the gateway's rule
  (``serving/ingest.py``): it never becomes a training row.

The scenario's world is a :class:`~causal_router.loop.stream.Stream` with the changed table (the same
prompts, order, test split and features), so regret and test utility are measured in the world as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .stream import Stream

SCENARIOS = ("none", "new-model", "degrade", "price", "partial-feedback-a", "partial-feedback-b")
#: The first round of the changed world.
CHANGE_ROUND = 3
#: partial feedback: the share of decisions that get a score; how much likelier a low score is reported (b).
REPORT_RATE, LOW_BIAS, LOW_SCORE = 0.3, 3.0, 0.5
#: price: the changed model's price is divided by this.
PRICE_FACTOR = 3.0


def check_scenario(name: str) -> str:
    """``name`` if it is a scenario, else ValueError naming the choices."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; scenarios: {', '.join(SCENARIOS)}")
    return name


@dataclass
class Scenario:
    """One scenario on one stream.

    name : str               one of :data:`SCENARIOS`
    changed : str or None    the new, degraded or repriced model (degrade: None until round 2 is served)
    weaker : str or None     degrade: the model whose outcomes the degraded one takes
    """

    name: str = "none"
    changed: str | None = None
    weaker: str | None = None
    change_round: int = CHANGE_ROUND

    @property
    def partial(self) -> bool:
        return self.name.startswith("partial-feedback")

    def start(self, stream: Stream) -> Stream:
        """The stream round 0 sees: for ``new-model``, the incumbent never draws the absent model."""
        if self.name != "new-model":
            return stream
        k = stream.models.index(self.changed)
        inc = stream.incumbent.copy()
        inc[:, k] = 0.0
        return replace(stream, incumbent=inc / inc.sum(1, keepdims=True))

    def world(self, stream: Stream, r: int) -> Stream:
        """The stream as round ``r`` sees it (outcomes and costs after the change from ``change_round``)."""
        if r < self.change_round or self.name not in ("degrade", "price") or self.changed is None:
            return self.start(stream) if r < self.change_round else stream
        ff = stream.ff
        k = stream.models.index(self.changed)
        if self.name == "degrade":
            scores = ff.scores.copy()
            scores[:, k] = ff.scores[:, stream.models.index(self.weaker)]
            return replace(stream, ff=replace(ff, scores=scores))
        costs = ff.costs.copy()
        costs[:, k] = ff.costs[:, k] / PRICE_FACTOR
        return replace(stream, ff=replace(ff, costs=costs))

    def pool(self, stream: Stream, r: int) -> list[str]:
        """The models served in round ``r``."""
        if self.name == "new-model" and r < self.change_round:
            return [m for m in stream.models if m != self.changed]
        return list(stream.models)

    def prices(self, prices: dict | None, r: int) -> dict | None:
        """The price sheet of round ``r``."""
        if prices is None or self.name != "price" or r < self.change_round:
            return prices
        pin, pout = prices[self.changed]
        return {**prices, self.changed: (pin / PRICE_FACTOR, pout / PRICE_FACTOR)}

    def reported(self, scores: np.ndarray, rng: np.random.Generator, low_share: float | None = None) -> np.ndarray:
        """Which of a round's decisions get a score: bool (m,) from their scores (m,). ``low_share``: the
        share of low scores the rates are set for (default: these scores', so that 30% of them are
        reported; an arm that learns decision by decision passes an estimate made beforehand)."""
        scores = np.asarray(scores, dtype=float)
        if not self.partial:
            return np.ones(len(scores), dtype=bool)
        if self.name == "partial-feedback-a":
            p = np.full(len(scores), REPORT_RATE)
        else:
            low = scores < LOW_SCORE
            share = low.mean() if low_share is None else float(low_share)
            high_rate = REPORT_RATE / (1.0 + (LOW_BIAS - 1.0) * share)  # the mean rate is 30%
            p = np.minimum(np.where(low, LOW_BIAS * high_rate, high_rate), 1.0)
        return rng.random(len(scores)) < p

    def after_round(self, stream: Stream, r: int, chosen: np.ndarray) -> None:
        """``degrade``: the round before the change fixes the degraded model (the most served one) when
        none was given."""
        if self.name == "degrade" and self.changed is None and r == self.change_round - 1:
            self.changed = stream.models[int(np.bincount(chosen, minlength=len(stream.models)).argmax())]
            self.weaker = weakest(stream, self.changed)


def weakest(stream: Stream, other_than: str) -> str:
    """The model with the lowest mean score on the table, other than ``other_than``."""
    order = np.argsort(stream.ff.scores.mean(0), kind="stable")
    return next(stream.models[k] for k in order if stream.models[k] != other_than)


def make_scenario(name: str, stream: Stream, changed: str | None = None) -> Scenario:
    """The scenario ``name`` on ``stream``; ``changed`` fixes the degraded model (else the champion's
    most served one in round 2)."""
    check_scenario(name)
    ff = stream.ff
    if name == "new-model":
        return Scenario(name, stream.models[int(stream.utility.mean(0).argmax())])
    if name == "price":
        return Scenario(name, stream.models[int(ff.costs.mean(0).argmax())])
    if name == "degrade":
        return Scenario(name, changed, None if changed is None else weakest(stream, changed))
    return Scenario(name)
