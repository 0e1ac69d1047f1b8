"""The ``litellm-adaptive`` arm: LiteLLM's adaptive router's own bandit (``litellm/router_strategy/
adaptive_router/bandit.py``: a Beta posterior per (request type, model), Thompson sampling, a weighted
score of the sampled quality and the normalised cost) driven offline over the loop's stream.

- **Request types**: LiteLLM's own classifier (``classifier.py:classify_prompt``, regular expressions over
  the prompt; it runs offline), as the router applies it to a session's first message.
- **Priors**: ``initial_cell`` with each model's ``quality_tier`` declared from its price (the dearest third
  of the models tier 3, the middle third 2, the cheapest 1: what an operator without quality data would
  declare) and no declared strengths.
- **Costs**: the price sheet's mean of input and output price per 1k tokens (only their order and spread
  matter: ``normalized_cost`` maps them to [0, 1]), the round's sheet in the ``price`` scenario.
- **Updates**: each reported outcome ``score`` in [0, 1] adds ``score`` to alpha and ``1 - score`` to beta
  (``apply_delta``, which drops updates past LiteLLM's ``SAMPLE_CAP``), decision by decision, as soon as it
  is known (LiteLLM's queue flushes later: this is the most favourable timing). Round 0's incumbent logs
  are learned first.
- **Cost weight**: ``quality_weight = 1 - cost_weight``; the study runs every weight of :data:`WEIGHTS`
  and keeps, per (dataset, seed, scenario), the one with the best final-round test utility: its best
  setting in hindsight for the study's lambda.
- **Test utility**: the greedy choice, the highest ``quality_weight * posterior mean + cost_weight *
  normalised cost`` among the served models for the prompt's request type.
"""

from __future__ import annotations

import random

import numpy as np

from causal_router.loop.rounds import record, rng, round0
from causal_router.loop.scenarios import LOW_SCORE, Scenario
from causal_router.loop.stream import Stream

#: The cost weights tried (the arm keeps the best in hindsight).
WEIGHTS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)
#: Spawn keys: the Thompson draws, the partial feedback draws.
DRAW_KEY, FEEDBACK_KEY = 400, 401


def _litellm():
    from litellm.router_strategy.adaptive_router import bandit
    from litellm.router_strategy.adaptive_router.classifier import classify_prompt
    from litellm.types.router import AdaptiveRouterPreferences

    return bandit, classify_prompt, AdaptiveRouterPreferences


def tiers(prices: dict, models) -> dict:
    """``{model: quality_tier}``: 3 for the dearest third by mean price, 2 the middle, 1 the cheapest."""
    mean = np.array([sum(prices[m]) / 2 for m in models])
    rank = np.argsort(np.argsort(mean, kind="stable"), kind="stable")
    return {m: int(1 + 3 * rk // len(models)) for m, rk in zip(models, rank)}


def per_1k(prices: dict, models) -> dict:
    return {m: (prices[m][0] + prices[m][1]) / 2 / 1000 for m in models}


class AdaptiveBandit:
    """LiteLLM's bandit state over ``models``: cells per (request type, model)."""

    def __init__(self, models, prices: dict, cost_weight: float, seed: int):
        self.bandit, self.classify, Prefs = _litellm()
        self.models = list(models)
        self.prefs = {m: Prefs(quality_tier=t) for m, t in tiers(prices, self.models).items()}
        self.cells: dict = {}
        self.cw, self.qw = float(cost_weight), 1.0 - float(cost_weight)
        self.rand = random.Random(int(np.random.SeedSequence(seed, spawn_key=(DRAW_KEY,)).generate_state(1)[0]))
        self.types: dict = {}

    def rtype(self, prompt: str):
        if prompt not in self.types:
            self.types[prompt] = self.classify(prompt)
        return self.types[prompt]

    def cell(self, rt, m):
        key = (rt, m)
        if key not in self.cells:
            self.cells[key] = self.bandit.initial_cell(self.prefs[m], rt)
        return self.cells[key]

    def pick(self, prompt: str, pool, costs: dict) -> str:
        rt = self.rtype(prompt)
        return self.bandit.pick_best({m: self.cell(rt, m) for m in pool}, {m: costs[m] for m in pool},
                                     self.qw, self.cw, rng=self.rand)

    def learn(self, prompt: str, model: str, score: float) -> None:
        rt = self.rtype(prompt)
        s = float(np.clip(score, 0.0, 1.0))
        self.cells[(rt, model)] = self.bandit.apply_delta(self.cell(rt, model), s, 1.0 - s)

    def greedy(self, prompt: str, pool, costs: dict) -> str:
        rt = self.rtype(prompt)
        all_costs = [costs[m] for m in pool]
        return max(pool, key=lambda m: self.bandit.score(self.cell(rt, m).mean, costs[m], all_costs, self.qw,
                                                         self.cw))


def run_litellm(stream: Stream, prices: dict, cost_weight: float, scenario: Scenario | None = None) -> list[dict]:
    """The arm's records at one cost weight (as :func:`benchmarks.loop_arms.run_arm`; ``cost_weight`` in each)."""
    sc = scenario or Scenario()
    models = stream.models
    index = {m: k for k, m in enumerate(models)}
    prompts = [str(p) for p in stream.ff.prompts]
    b = AdaptiveBandit(models, prices, cost_weight, stream.seed)
    idx0, _, chosen0, regret, deployed0 = round0(sc.start(stream))
    for i, k in zip(idx0, chosen0):
        b.learn(prompts[i], models[k], sc.start(stream).ff.scores[i, k])
    fb = rng(stream.seed, FEEDBACK_KEY)
    out = []
    for r in range(stream.rounds):
        world, pool = sc.world(stream, r), sc.pool(stream, r)
        costs = per_1k(sc.prices(prices, r), models)
        idx = stream.round_prompts(r)
        if r == 0:
            chosen, deployed = chosen0, deployed0
        else:
            low = float((world.ff.scores[idx] < LOW_SCORE).mean())  # the rates of b, set beforehand
            chosen = np.empty(len(idx), dtype=int)
            for j, i in enumerate(idx):
                k = index[b.pick(prompts[i], pool, costs)]
                chosen[j] = k
                score = world.ff.scores[i, k]
                if sc.reported(np.array([score]), fb, low)[0]:
                    b.learn(prompts[i], models[k], score)
            regret += world.regret(idx, chosen)
            deployed = float(world.realised(idx, chosen).mean())
        sc.after_round(stream, r, chosen)
        test = world.test_utility(np.array([index[b.greedy(prompts[i], pool, costs)] for i in stream.test]))
        rec = record("litellm-adaptive", 0.0, r, stream, (r + 1) * stream.batch, deployed, test, regret, None)
        rec["cost_weight"] = float(cost_weight)
        rec["changed_model_share"] = None if sc.changed is None else float(np.mean(chosen == index[sc.changed]))
        out.append(rec)
    return out


def best_in_hindsight(stream: Stream, prices: dict, scenario_factory, weights=WEIGHTS) -> list[dict]:
    """:func:`run_litellm` at every weight; the records of the one with the best final test utility
    (``scenario_factory()`` makes a fresh scenario per run)."""
    runs = [run_litellm(stream, prices, w, scenario_factory()) for w in weights]
    return max(runs, key=lambda recs: (recs[-1]["test_utility"], np.mean([x["deployed_utility"] for x in recs])))
