"""The loop study's arms, run round by round on one stream.

- ``causal``: RM-Softmax on DR utilities at ``lam``, served with exploration, the gate decides
  (the product's loop, :func:`causal_router.loop.rounds.run_rounds`);
- ``greedy``: the ``naive`` router, no exploration, always deployed;
- ``explore-naive``: the ``naive`` router with the same exploration, always deployed;
- ``incumbent``: the round-0 logging policy throughout;
- ``skyline``: the ``causal`` arm's learner (RM-Softmax from the direct method) trained on full
  feedback for every prompt streamed so far;
- ``vw``: Vowpal Wabbit's online contextual bandit (:mod:`benchmarks.vw`);
- ``litellm-adaptive``: LiteLLM's adaptive router's bandit driven offline at its best cost weight in
  hindsight (:mod:`benchmarks.litellm_adaptive`).

Under a scenario (:mod:`causal_router.loop.scenarios`) every arm but ``incumbent`` serves the round's pool,
learns only the reported outcomes and is scored in the round's world; the skyline is trained on the
world as it is at each round (every seen prompt's current outcomes, among the served models).

Every arm's round 0 is the incumbent routing the first batch (the same draws for every arm).
Each arm trains only the router it deploys. :func:`uniform_reference` is the static level of the
same learner trained on uniformly logged rows.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from causal_router.causal.nuisances import NuisanceConfig
from causal_router.loop.rounds import MEMORY_STORE, SERVE_KEY, loop_nuisances, record, rng, round0, run_rounds
from causal_router.loop.steps import greedy_actions
from causal_router.loop.stream import Stream
from causal_router.policy.catalog import get_router

ARMS = ("causal", "greedy", "explore-naive", "vw", "incumbent", "skyline", "litellm-adaptive")
#: The router each retraining arm deploys, whether it explores, whether the gate decides.
SPECS = {
    "causal": ("rm-softmax", True, True),
    "greedy": ("naive", False, False),
    "explore-naive": ("naive", True, False),
}
#: Spawn key of the first uniform reference draw (draw j: ``UNIFORM_KEY + j``).
UNIFORM_KEY = 300


def run_arm(stream: Stream, arm: str, explore: float = 0.0, *, nuisances: NuisanceConfig | None = None,
            prices=None, workdir=None, hooks=None, params: dict | None = None,
            store_uri: str | None = MEMORY_STORE, stage=None, scenario=None) -> list[dict]:
    """One arm over every round of ``stream``; one record per round
    (:data:`causal_router.loop.rounds.RECORD_COLUMNS` less ``dataset``).

    The retraining arms run :func:`causal_router.loop.rounds.run_rounds` (its docstring gives the
    records and the keyword arguments); ``promoted`` is None for ``incumbent``, ``skyline``, ``vw`` and
    ``litellm-adaptive``. ``params``: router parameters of the skyline (``{"rm-softmax": {...}}``).
    ``scenario``: a :class:`causal_router.loop.scenarios.Scenario` (a fresh one per arm: ``degrade`` fixes
    its model as it goes unless given), or a function making one (``litellm-adaptive`` runs several).
    """
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; arms: {', '.join(ARMS)}")
    make = scenario if callable(scenario) else (lambda: scenario)
    if arm == "litellm-adaptive":
        from .litellm_adaptive import best_in_hindsight

        if prices is None:
            raise ValueError("the litellm-adaptive arm needs the table's price sheet (its costs)")
        return best_in_hindsight(stream, prices, make)
    if arm == "vw":
        from .vw import run_vw

        return run_vw(stream, explore, scenario=make())
    if arm == "incumbent":
        return _incumbent(stream)
    if arm == "skyline":
        return _skyline(stream, params, prices, make())
    method, explores, gated = SPECS[arm]
    return run_rounds(stream, float(explore) if explores else 0.0, method=method, gated=gated, arm=arm,
                      nuisances=nuisances, prices=prices, workdir=workdir, hooks=hooks, store_uri=store_uri,
                      stage=stage, scenario=make())


def _incumbent(stream: Stream) -> list[dict]:
    from causal_router.policy.exploration import ExplorationPolicy

    idx0, _, _, regret, deployed0 = round0(stream)
    test = float((stream.incumbent[stream.test] * stream.utility[stream.test]).sum(1).mean())
    out = [record("incumbent", 0.0, 0, stream, len(idx0), deployed0, test, regret, None)]
    draws = rng(stream.seed, SERVE_KEY)
    for r in range(1, stream.rounds):
        idx = stream.round_prompts(r)
        chosen, _ = ExplorationPolicy.draw(stream.incumbent[idx], draws)
        regret += stream.regret(idx, chosen)
        out.append(record("incumbent", 0.0, r, stream, (r + 1) * stream.batch,
                          stream.realised(idx, chosen).mean(), test, regret, None))
    return out


def fit_outcome_models(ff, X, rows, arms, prices=None):
    """The direct method's outcome models (pooled quality ridge, token cost model) fitted on the
    table's outcomes of model ``arms[i]`` on prompt ``rows[i]``.

    ff : FullFeedback; X : ndarray (n_prompts, d); rows, arms : ndarray (m,) int;
    prices : ndarray (K, 2) per million tokens or None (recovered from the costs).
    Returns (quality model, cost model), each predicting (n, K).
    """
    from causal_router.causal.outcome import PooledRidge, TokenCostModel

    K = len(ff.models)
    tok_in = None if ff.input_tokens is None else ff.input_tokens[rows]
    tok_out = None if ff.output_tokens is None else ff.output_tokens[rows, arms]
    quality = PooledRidge(require_all_arms=False).fit(X[rows], arms, ff.scores[rows, arms], n_arms=K)
    cost = TokenCostModel(prices=prices).fit(X[rows], arms, ff.costs[rows, arms], input_tokens=tok_in,
                                             output_tokens=tok_out, n_arms=K)
    return quality, cost


class FullFeedbackOutcomes:
    """The direct method fitted on every model's outcome for prompts ``idx`` (full feedback), in the
    place of a fitted cross-fitter: the routers read its refit models (the "dm" start and fallback)
    and its in-sample nuisances (the start's scale). Its propensity model is uniform: with full
    feedback nothing was logged, so the "logging" start is a plain network.

    ff : FullFeedback; X : ndarray (n_prompts, d); idx : ndarray (m,) prompt indices;
    prices : mapping model -> price sheet entry, as the train path takes them, or None (recovered
    from the costs).
    """

    def __init__(self, ff, X, idx, prices=None):
        from causal_router.policy.data import price_array

        K = len(ff.models)
        self.quality_model_, self.cost_model_ = fit_outcome_models(
            ff, X, np.repeat(idx, K), np.tile(np.arange(K), len(idx)), price_array(prices, list(ff.models)))
        self.propensity_model_ = _UniformPropensity(K)
        tok = None if ff.input_tokens is None else ff.input_tokens[idx]
        self.nuisances_ = SimpleNamespace(quality=self.quality_model_.predict(X[idx]),
                                          cost=self.cost_model_.predict(X[idx], tok))


class _UniformPropensity:
    def __init__(self, n_arms: int):
        self.n_arms = n_arms

    def predict_proba(self, X) -> np.ndarray:
        """(n, K) equal probabilities."""
        return np.full((len(X), self.n_arms), 1.0 / self.n_arms)


def full_feedback_router(stream: Stream, idx, params: dict | None = None, val_share: float = 0.2, prices=None):
    """RM-Softmax at ``stream.lam`` trained on every model's true outcome for prompts ``idx`` (the
    last ``val_share`` of them early-stop it and choose its start): the ``causal`` arm's learner
    given full feedback. Like that arm's, it starts from the direct method (fitted here on every
    model's outcome, :class:`FullFeedbackOutcomes`) or from a plain network, whichever validates better,
    and early stopping keeps the start when training does not improve on it."""
    from causal_router.features.hardware import torch_threads
    from causal_router.policy.data import full_feedback_data

    idx = np.asarray(idx)
    cut = int(round(len(idx) * (1 - val_share)))
    tr, va = idx[:cut], idx[cut:]
    data = full_feedback_data(stream.ff, stream.X, tr, va, FullFeedbackOutcomes(stream.ff, stream.X, tr, prices))
    with torch_threads(1):
        return get_router("rm-softmax", **(params or {}).get("rm-softmax", {})).fit(data, [stream.lam])


def _skyline(stream: Stream, params, prices=None, scenario=None) -> list[dict]:
    from dataclasses import replace

    from causal_router.loop.scenarios import Scenario

    given, sc = scenario is not None, scenario or Scenario()
    _, _, chosen, regret, deployed0 = round0(sc.start(stream))
    out, router, cols = [], None, None
    for r in range(stream.rounds):
        idx = stream.round_prompts(r)
        world = sc.world(stream, r)
        if r == 0:
            deployed = deployed0
        else:  # the router trained on rounds 0..r-1 routes round r (greedy), among the models served then
            chosen = cols[router.predict(stream.X[idx], stream.lam, stream.input_tokens(idx))]
            regret += world.regret(idx, chosen)
            deployed = float(world.realised(idx, chosen).mean())
        sc.after_round(stream, r, chosen)
        pool = sc.pool(stream, r + 1 if r + 1 < stream.rounds else r)  # it routes the next round
        cols = np.array([stream.models.index(m) for m in pool])
        ahead = sc.world(stream, r + 1) if sc.name in ("degrade", "price") and r + 1 < stream.rounds else world
        ff = ahead.ff
        pick = lambda a, c=cols: None if a is None else a[:, c]  # noqa: E731
        sub = replace(ahead, ff=replace(ff, models=ff.models[cols], scores=ff.scores[:, cols], costs=ff.costs[:, cols],
                                        output_tokens=pick(ff.output_tokens), propensities=pick(ff.propensities)))
        router = full_feedback_router(sub, stream.seen(r), params,
                                      prices=sc.prices(prices, min(r + 1, stream.rounds - 1)))
        test = world.test_utility(cols[router.predict(stream.X[stream.test], stream.lam,
                                                      stream.input_tokens(stream.test))])
        out.append(record("skyline", 0.0, r, stream, (r + 1) * stream.batch, deployed, test, regret, None))
        if given:
            out[-1]["changed_model_share"] = (None if sc.changed is None
                                              else float(np.mean(chosen == stream.models.index(sc.changed))))
    return out


def uniform_reference(stream: Stream, n: int, nuisances: NuisanceConfig | None = None, prices=None,
                      draws: int = 1) -> list[float]:
    """Static uniform-logging level: RM-Softmax trained on ``n`` uniformly logged stream prompts
    (60/20 train/val as ``simulate`` splits, through the one training path); its test utility, one
    per independent uniform draw of the logged models (``draws`` of them; the first is the same
    draw whatever ``draws`` is).

    One draw is a noisy level: which of two near-equal models a router settles on moves its test
    utility by several hundredths (``docs/loop.md``), so the study averages several.
    """
    from causal_router.data.simulate import log_frame
    from causal_router.policy.training import fit_routing_data, train_routerset

    if int(draws) < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    idx = stream.order[:n]
    K = len(stream.models)
    probs = np.full((stream.ff.n_prompts, K), 1.0 / K)
    cut = int(round(0.75 * len(idx)))
    nuisances = nuisances or loop_nuisances(stream.seed)
    out = []
    for j in range(int(draws)):
        chosen = rng(stream.seed, UNIFORM_KEY + j).integers(0, K, size=len(idx))
        logs = log_frame(stream.ff, idx, chosen, probs)
        data, meta = fit_routing_data(logs.iloc[:cut], stream.X[idx[:cut]], logs.iloc[cut:], stream.X[idx[cut:]],
                                      models=stream.models, prices=prices, nuisances=nuisances)
        rs = train_routerset(data, [stream.lam], ["rm-softmax"], meta=meta)
        out.append(stream.test_utility(greedy_actions(rs, "rm-softmax", stream, stream.test)))
    return out
