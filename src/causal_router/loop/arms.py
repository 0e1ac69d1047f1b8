"""The loop's arms, run round by round on one stream (issue: the loop, measured).

- ``causal``: RM-Softmax on DR utilities at ``lam``, served with exploration, the gate decides;
- ``greedy``: the ``naive`` router, no exploration, always deployed;
- ``explore-naive``: the ``naive`` router with the same exploration, always deployed;
- ``incumbent``: the round-0 logging policy throughout;
- ``skyline``: the ``causal`` arm's learner (RM-Softmax from the direct method) trained on full
  feedback for every prompt streamed so far;
- ``vw``: Vowpal Wabbit's online contextual bandit (:mod:`causal_router.loop.vw`).

Every arm's round 0 is the incumbent routing the first batch (the same draws for every arm).
Each arm trains only the router it deploys.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..causal.nuisances import NuisanceConfig
from ..policy.routers import get_router
from ..settings.params import PromoteSettings
from .stages import (
    Holder,
    gate,
    greedy_actions,
    incumbent_logs,
    make_service,
    n_logged,
    read_logs,
    serve_round,
    served_model,
    train_round,
    write_round0,
)
from .stream import Stream

log = logging.getLogger(__name__)

ARMS = ("causal", "greedy", "explore-naive", "vw", "incumbent", "skyline")
RECORD_COLUMNS = ("dataset", "seed", "arm", "explore", "round", "lam", "n_logged", "deployed_utility",
                  "test_utility", "cumulative_regret", "promoted")
#: The router each retraining arm deploys, whether it explores, whether the gate decides.
SPECS = {
    "causal": ("rm-softmax", True, True),
    "greedy": ("naive", False, False),
    "explore-naive": ("naive", True, False),
}
#: The study's decision log: SQLite in memory.
MEMORY_STORE = "sqlite://"
#: Spawn keys: the incumbent's round-0 draws (shared by all arms), the service's draws, the first
#: uniform reference draw (draw j: ``_UNIFORM + j``).
_ROUND0, _SERVE, _UNIFORM = 200, 201, 300


#: Ingest settings of every retraining arm: params.yaml's ``ingest`` defaults (the holdout accumulates).
INGEST = {"holdout_fraction": 0.2, "holdout_max_rows": 2000}
#: The gate of every gated arm: params.yaml's ``promote`` defaults.
GATE = PromoteSettings().gate()


def loop_nuisances(seed: int = 0, cv: int = 5) -> NuisanceConfig:
    """The loop's nuisance settings: the decision log records the served policy's true
    propensities, so DR weights use them (``propensity="logged"``); folds and clip as params.yaml."""
    return NuisanceConfig(cv=cv, propensity="logged", seed=seed)


def _rng(seed: int, key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(key,)))


def _record(arm, explore, r, stream, n, deployed, test, regret, promoted) -> dict:
    return {"seed": stream.seed, "arm": arm, "explore": float(explore), "round": r, "lam": stream.lam,
            "n_logged": int(n), "deployed_utility": float(deployed), "test_utility": float(test),
            "cumulative_regret": float(regret), "promoted": promoted}


def run_arm(stream: Stream, arm: str, explore: float = 0.0, *, nuisances: NuisanceConfig | None = None,
            prices=None, workdir=None, hooks=None, params: dict | None = None,
            store_uri: str | None = MEMORY_STORE, stage=None) -> list[dict]:
    """One arm over every round of ``stream``; one record per round (:data:`RECORD_COLUMNS` less ``dataset``).

    ``deployed_utility`` is the mean realised utility of the round's prompts (exploration
    included), ``test_utility`` the mean utility on the test prompts of the router deployed after
    the round (explore 0; the incumbent's expected utility), ``cumulative_regret`` the summed
    per-query regret of every round so far, ``promoted`` whether the gate promoted (retraining
    arms without a gate deploy every router: True; ``incumbent``, ``skyline`` and ``vw``: None).

    ``store_uri`` is the decision log's SQLAlchemy URI (default: in-memory SQLite, the same code
    without an fsync per feedback; None: ``<workdir>/decisions/decisions.db``).
    ``hooks`` (optional) replaces the registry side of a retraining arm: an object with
    ``register(rs, round, data_dir) -> version``, ``promote(rs, version, round, data_dir) -> bool``
    and ``served() -> ServedModel`` (the CLI's flow registers every round's router in MLflow, runs
    the registry's gate and serves the champion loaded from the registry). ``stage(fn) -> fn``
    (optional) wraps each round's stage, e.g. as a Prefect task.
    """
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; arms: {', '.join(ARMS)}")
    if arm == "vw":
        from .vw import run_vw

        return run_vw(stream, explore)
    nuisances = nuisances or loop_nuisances(stream.seed)
    idx0 = stream.round_prompts(0)
    logs0, chosen0 = incumbent_logs(stream, idx0, _rng(stream.seed, _ROUND0))
    regret = stream.regret(idx0, chosen0)
    deployed0 = float(stream.realised(idx0, chosen0).mean())
    if arm == "incumbent":
        test = float((stream.incumbent[stream.test] * stream.utility[stream.test]).sum(1).mean())
        out = [_record(arm, 0.0, 0, stream, len(idx0), deployed0, test, regret, None)]
        rng = _rng(stream.seed, _SERVE)
        for r in range(1, stream.rounds):
            idx = stream.round_prompts(r)
            from ..policy.exploration import ExplorationPolicy

            chosen, _ = ExplorationPolicy.draw(stream.incumbent[idx], rng)
            regret += stream.regret(idx, chosen)
            out.append(_record(arm, 0.0, r, stream, (r + 1) * stream.batch,
                               stream.realised(idx, chosen).mean(), test, regret, None))
        return out
    if arm == "skyline":
        return _skyline(stream, deployed0, regret, params, prices)
    return _retrain_arm(stream, arm, explore, logs0, deployed0, regret, nuisances, prices, workdir, hooks,
                        store_uri, stage or (lambda fn: fn))


def _retrain_arm(stream, arm, explore, logs0, deployed0, regret, nuisances, prices, workdir, hooks, store_uri,
                 stage):
    from ..serving.ingest import ingest
    from ..serving.store import DecisionStore

    method, explores, gated = SPECS[arm]
    explore = float(explore) if explores else 0.0
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix=f"loop-{arm}-")
        workdir = tmp.name
    workdir = Path(workdir)
    data_dir = workdir / "data"
    store = DecisionStore(store_uri or f"sqlite:///{workdir / 'decisions' / 'decisions.db'}")
    try:
        write_round0(logs0, data_dir)
        service = make_service(stream, Holder(None), store, explore, stream.seed * 1000 + _SERVE)
        encoder = service.encoder
        champion, champion_version, out = None, None, []
        for r in range(stream.rounds):
            start = time.perf_counter()
            if r == 0:
                deployed = deployed0
            else:
                idx = stream.round_prompts(r)
                chosen = stage(serve_round)(service, stream, idx, explore)
                regret += stream.regret(idx, chosen)
                deployed = float(stream.realised(idx, chosen).mean())
                stage(ingest)(store, data_dir, INGEST["holdout_fraction"], root=workdir, dvc=False,
                              holdout_max_rows=INGEST["holdout_max_rows"])
            rs = stage(train_round)(data_dir, encoder, stream.models, stream.lam, [method], nuisances, prices,
                             workdir / "routers" / f"round-{r}")
            if hooks is not None:
                version = hooks.register(rs, r, data_dir)
                promoted = bool(hooks.promote(rs, version, r, data_dir)) if gated else True
            else:
                version = str(r)
                if gated:
                    holdout, Xh = read_logs(data_dir, encoder)["holdout"]
                    decision = gate(rs, champion, holdout, Xh, stream.lam, method, nuisances, prices, **GATE)
                    log.info("gate, round %d: %s", r, decision.reason)
                    promoted = decision.promoted
                else:
                    promoted = True
            if promoted:
                champion, champion_version = rs, version
            if promoted or (gated and explore > 0):  # a rejected challenger is served as the canary
                service.holder.current = hooks.served() if hooks is not None else \
                    served_model(champion, method, stream.lam, champion_version,
                                 challenger=None if promoted else rs, challenger_version=version)
            test = stream.test_utility(greedy_actions(champion, method, stream, stream.test))
            out.append(_record(arm, explore, r, stream, n_logged(data_dir), deployed, test, regret, promoted))
            log.info("%s explore %g round %d: deployed %.4f test %.4f promoted %s (%.1fs)", arm, explore, r,
                     deployed, test, promoted, time.perf_counter() - start)
        return out
    finally:
        store.close()
        if tmp is not None:
            tmp.cleanup()


def fit_outcome_models(ff, X, rows, arms, prices=None):
    """The direct method's outcome models (pooled quality ridge, token cost model) fitted on the
    table's outcomes of model ``arms[i]`` on prompt ``rows[i]``.

    ff : FullFeedback; X : ndarray (n_prompts, d); rows, arms : ndarray (m,) int;
    prices : ndarray (K, 2) per million tokens or None (recovered from the costs).
    Returns (quality model, cost model), each predicting (n, K).
    """
    from ..causal.outcome import PooledRidge, TokenCostModel

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
        from ..policy.data import price_array

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
    from ..features.hardware import torch_threads
    from ..policy.data import full_feedback_data

    idx = np.asarray(idx)
    cut = int(round(len(idx) * (1 - val_share)))
    tr, va = idx[:cut], idx[cut:]
    data = full_feedback_data(stream.ff, stream.X, tr, va, FullFeedbackOutcomes(stream.ff, stream.X, tr, prices))
    with torch_threads(1):
        return get_router("rm-softmax", **(params or {}).get("rm-softmax", {})).fit(data, [stream.lam])


def _skyline(stream: Stream, deployed0: float, regret: float, params, prices=None) -> list[dict]:
    out, router = [], None
    for r in range(stream.rounds):
        idx = stream.round_prompts(r)
        if r == 0:
            deployed = deployed0
        else:  # the router trained on rounds 0..r-1 routes round r (greedy)
            chosen = router.predict(stream.X[idx], stream.lam, stream.input_tokens(idx))
            regret += stream.regret(idx, chosen)
            deployed = float(stream.realised(idx, chosen).mean())
        router = full_feedback_router(stream, stream.seen(r), params, prices=prices)
        test = stream.test_utility(router.predict(stream.X[stream.test], stream.lam, stream.input_tokens(stream.test)))
        out.append(_record("skyline", 0.0, r, stream, (r + 1) * stream.batch, deployed, test, regret, None))
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
    from ..data.simulate import _log_frame
    from ..policy.training import fit_routing_data, train_routerset

    if int(draws) < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    idx = stream.order[:n]
    K = len(stream.models)
    probs = np.full((stream.ff.n_prompts, K), 1.0 / K)
    cut = int(round(0.75 * len(idx)))
    nuisances = nuisances or loop_nuisances(stream.seed)
    out = []
    for j in range(int(draws)):
        chosen = _rng(stream.seed, _UNIFORM + j).integers(0, K, size=len(idx))
        logs = _log_frame(stream.ff, idx, chosen, probs)
        data, meta = fit_routing_data(logs.iloc[:cut], stream.X[idx[:cut]], logs.iloc[cut:], stream.X[idx[cut:]],
                                      models=stream.models, prices=prices, nuisances=nuisances)
        rs = train_routerset(data, [stream.lam], ["rm-softmax"], meta=meta)
        out.append(stream.test_utility(greedy_actions(rs, "rm-softmax", stream, stream.test)))
    return out
