"""The loop's rounds on one stream: round 0 by the incumbent, then serve, ingest, retrain and gate.

Round 0: the incumbent logging policy routes the first batch (:func:`round0`, the same draws
whatever runs next). Every later round (:func:`run_rounds`): the deployed router serves the next
batch through the service's code, the outcomes go back as feedback, ``ingest`` appends them, a
router is retrained on the logs and, when ``gated``, the promotion gate decides whether it is
deployed. ``causal-router loop`` runs the ``causal`` deployment: RM-Softmax with exploration, gated.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from ..causal.nuisances import NuisanceConfig
from ..settings.params import IngestSettings, PromoteSettings
from .budget import serve_controlled
from .steps import (
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

RECORD_COLUMNS = ("dataset", "seed", "arm", "explore", "round", "lam", "n_logged", "deployed_utility",
                  "test_utility", "cumulative_regret", "promoted")
#: Extra columns of a loop under a budget (:meth:`causal_router.loop.budget.Budget.record`).
BUDGET_COLUMNS = ("budget", "spend", "test_quality", "test_cost")
#: The router the product's loop deploys.
METHOD = "rm-softmax"
#: The decision log of a run without a project folder: SQLite in memory.
MEMORY_STORE = "sqlite://"
#: Spawn keys: the incumbent's round-0 draws (shared by every run on a stream), the service's draws.
ROUND0_KEY, SERVE_KEY = 200, 201
#: Spawn key of the draws of which decisions get feedback (partial-feedback scenarios).
FEEDBACK_KEY = 202

#: Ingest settings of every round: params.yaml's ``ingest`` defaults (the holdout accumulates).
INGEST = IngestSettings().model_dump()
#: The gate of a gated run: params.yaml's ``promote`` defaults.
GATE = PromoteSettings().gate()
#: Serve settings of every round beyond the service's defaults (e.g. ``cold_start_share``; studies set them).
SERVE: dict = {}


def loop_nuisances(seed: int = 0, cv: int = 5) -> NuisanceConfig:
    """The loop's nuisance settings: the decision log records the served policy's true
    propensities, so DR weights use them (``propensity="logged"``); folds and clip as params.yaml."""
    return NuisanceConfig(cv=cv, propensity="logged", seed=seed)


def rng(seed: int, key: int) -> np.random.Generator:
    """The generator of spawn key ``key`` under ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(key,)))


def record(arm, explore, r, stream, n, deployed, test, regret, promoted) -> dict:
    """One round's record (:data:`RECORD_COLUMNS` less ``dataset``)."""
    return {"seed": stream.seed, "arm": arm, "explore": float(explore), "round": r, "lam": stream.lam,
            "n_logged": int(n), "deployed_utility": float(deployed), "test_utility": float(test),
            "cumulative_regret": float(regret), "promoted": promoted}


def round0(stream: Stream):
    """The incumbent routes round 0's prompts: (prompt indices (batch,), logs, chosen model indices
    (batch,), summed regret, mean realised utility)."""
    idx0 = stream.round_prompts(0)
    logs0, chosen0 = incumbent_logs(stream, idx0, rng(stream.seed, ROUND0_KEY))
    return idx0, logs0, chosen0, stream.regret(idx0, chosen0), float(stream.realised(idx0, chosen0).mean())


def run_rounds(stream: Stream, explore: float = 0.0, *, method: str = METHOD, gated: bool = True,
               arm: str = "causal", nuisances: NuisanceConfig | None = None, prices=None, workdir=None,
               hooks=None, store_uri: str | None = MEMORY_STORE, stage=None, budget=None,
               scenario=None) -> list[dict]:
    """Every round of ``stream``, retraining ``method`` each round; one record per round
    (:data:`RECORD_COLUMNS` less ``dataset``, labelled ``arm``).

    ``deployed_utility`` is the mean realised utility of the round's prompts (exploration
    included), ``test_utility`` the mean utility on the test prompts of the router deployed after
    the round (explore 0), ``cumulative_regret`` the summed per-query regret of every round so far,
    ``promoted`` whether the gate promoted (True every round when not ``gated``).

    ``store_uri`` is the decision log's SQLAlchemy URI (default: in-memory SQLite, the same code
    without an fsync per feedback; None: ``<workdir>/decisions/decisions.db``).
    ``hooks`` (optional) replaces the registry side: an object with
    ``register(rs, round, data_dir) -> version``, ``promote(rs, version, round, data_dir) -> bool``
    and ``served() -> ServedModel`` (the CLI's flow registers every round's router in MLflow, runs
    the registry's gate and serves the champion loaded from the registry). ``stage(fn) -> fn``
    (optional) wraps each round's stage, e.g. as a Prefect task.

    ``budget`` (optional, a :class:`causal_router.loop.budget.Budget`): hold a spend target; ``method``
    is then trained on the budget's grid and each decision served at its control's lambda (the
    records gain :data:`BUDGET_COLUMNS`; ``lam`` is the control's lambda after the round, the test
    choices are made there and scored at ``stream.lam``).

    ``scenario`` (optional, a :class:`causal_router.loop.scenarios.Scenario`): the world changes
    (outcomes, prices, the served pool, which feedback comes back); regret, realised and test utility are
    measured in each round's world, and the records gain ``changed_model_share`` (the round's share of
    decisions to the scenario's model).
    """
    from ..serving.ingest import ingest
    from ..serving.store import DecisionStore
    from .scenarios import Scenario

    nuisances = nuisances or loop_nuisances(stream.seed)
    stage = stage or (lambda fn: fn)
    given, scenario = scenario is not None, scenario or Scenario()
    _, logs0, chosen0, regret, deployed0 = round0(scenario.start(stream))
    feedback_rng = rng(stream.seed, FEEDBACK_KEY)
    grid = [stream.lam] if budget is None else budget.grid
    methods = [method] if budget is None else budget.methods(method)
    explore = float(explore)
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix=f"loop-{arm}-")
        workdir = tmp.name
    workdir = Path(workdir)
    data_dir = workdir / "data"
    store = DecisionStore(store_uri or f"sqlite:///{workdir / 'decisions' / 'decisions.db'}")
    try:
        write_round0(logs0, data_dir)
        service = make_service(stream, Holder(None), store, explore, stream.seed * 1000 + SERVE_KEY, **SERVE)
        encoder = service.encoder
        champion, champion_version, out = None, None, []
        for r in range(stream.rounds):
            start = time.perf_counter()
            world, pool, round_prices = scenario.world(stream, r), scenario.pool(stream, r), scenario.prices(prices, r)
            service.pool = pool
            if r == 0:
                deployed, chosen = deployed0, chosen0
            else:
                idx = stream.round_prompts(r)
                if budget is None:
                    reported = (lambda sc: scenario.reported(sc, feedback_rng)) if scenario.partial else None
                    chosen = stage(serve_round)(service, world, idx, explore, reported)
                else:
                    chosen = stage(serve_controlled)(service, world, idx, explore, budget.control, r, budget.trace)
                regret += world.regret(idx, chosen)
                deployed = float(world.realised(idx, chosen).mean())
                stage(ingest)(store, data_dir, INGEST["holdout_fraction"], root=workdir, dvc=False,
                              holdout_max_rows=INGEST["holdout_max_rows"], change_z=INGEST["change_z"],
                              change_min_rows=INGEST["change_min_rows"])
            scenario.after_round(stream, r, chosen)
            share = (None if scenario.changed is None
                     else float(np.mean(chosen == stream.models.index(scenario.changed))))
            rs = stage(train_round)(data_dir, encoder, stream.models, grid, methods, nuisances, round_prices,
                                    workdir / "routers" / f"round-{r}", pool)
            if budget is not None and r == 0:
                budget.start(rs, method, data_dir, encoder, nuisances, round_prices)
            lam = stream.lam if budget is None else budget.control.lam  # the gate compares at the served lambda
            if hooks is not None:
                hooks.prices = round_prices  # the registry's gate costs with this round's price sheet
                version = hooks.register(rs, r, data_dir)
                promoted = (bool(hooks.promote(rs, version, r, data_dir, **({} if budget is None else {"lam": lam})))
                            if gated else True)
            else:
                version = str(r)
                if gated:
                    logs = read_logs(data_dir, encoder)
                    decision = gate(rs, champion, *logs["holdout"], lam, method, nuisances, round_prices, **GATE,
                                    support=[logs["train"], logs["val"]])
                    log.info("gate, round %d: %s", r, decision.reason)
                    promoted = decision.promoted
                else:
                    promoted = True
            if promoted:
                champion, champion_version = rs, version
                if budget is not None and r > 0:
                    budget.redeploy(rs, method, data_dir, encoder, nuisances, round_prices)
            if promoted or (gated and explore > 0):  # a rejected challenger is served as the canary
                service.holder.current = hooks.served() if hooks is not None else \
                    served_model(champion, method, stream.lam, champion_version,
                                 challenger=None if promoted else rs, challenger_version=version,
                                 lam_range=(grid[0], grid[-1]))
            actions = greedy_actions(champion, method, stream, stream.test,
                                     stream.lam if budget is None else budget.control.lam)
            test = world.test_utility(actions)
            out.append(record(arm, explore, r, stream, n_logged(data_dir), deployed, test, regret, promoted))
            if given:
                out[-1]["changed_model_share"] = share
            if budget is not None:
                out[-1].update(budget.record(stream, actions, r))
            log.info("%s explore %g round %d: deployed %.4f test %.4f promoted %s (%.1fs)", arm, explore, r,
                     deployed, test, promoted, time.perf_counter() - start)
        return out
    finally:
        store.close()
        if tmp is not None:
            tmp.cleanup()
