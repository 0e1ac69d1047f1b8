"""The ``loop`` flow: a simulated deployment on a full-feedback table, round by round (``causal-router loop``).

Round 0: the incumbent logging policy routes the first batch; its logs train the first router,
which is registered and promoted. Each later round: the champion routes the next batch through
the service's routing code (exploration and decision log), the table's outcomes go back as
feedback, ``ingest`` appends them, the router is retrained, registered with its lineage, and the
registry's gate decides. Each stage of a round runs as a Prefect task (``flows/loop.py`` runs
the flow from a checkout).
"""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE


def as_task(fn):
    """A round's stage as a Prefect task (its inputs are live objects: never cached)."""
    return task(fn, name=fn.__name__, cache_policy=NO_CACHE)


@flow(name="causal-router-loop", log_prints=True)
def loop_flow(stream, out: str, explore: float, nuisances, prices=None, params: dict | None = None,
              budget=None, scenario=None) -> dict:
    """The ``causal`` deployment (:func:`causal_router.loop.rounds.run_rounds`) on ``stream``, with the registry
    (``budget``: a :class:`causal_router.loop.budget.Budget`, the interval router under the controller)."""
    from pathlib import Path

    from .hooks import RegistryHooks
    from .rounds import METHOD, run_rounds
    from .stream import LookupEncoder

    hooks = RegistryHooks(out, stream.lam, LookupEncoder(stream.ff.prompts, stream.X), nuisances, prices, params,
                          interval=budget is not None)
    records = run_rounds(stream, explore, method="rm-interval" if budget is not None else METHOD,
                         nuisances=nuisances, prices=prices, workdir=Path(out), hooks=hooks, store_uri=None,
                         stage=as_task, budget=budget, scenario=scenario)
    return {"records": records, "decisions": hooks.decisions, "registered_name": hooks.name}
