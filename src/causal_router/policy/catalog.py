"""Routers under stable names: the registry the CLI, the flows and the benchmarks look routers up in."""

from __future__ import annotations

from .regret import RMClassificationRouter, RMIntervalRouter, RMSoftmaxRouter
from .routers import BestSingleRouter, CheapestRouter, DRRegressRouter, NaiveRouter, RandomRouter

#: name -> router class (each class's ``name``)
ROUTERS: dict[str, type] = {cls.name: cls for cls in (
    RandomRouter, CheapestRouter, BestSingleRouter, NaiveRouter, DRRegressRouter,
    RMSoftmaxRouter, RMClassificationRouter, RMIntervalRouter)}


def get_router(name: str, **params):
    """Instantiate a registered router by name."""
    if name not in ROUTERS:
        raise KeyError(f"unknown router {name!r}; registered: {', '.join(ROUTERS)}")
    return ROUTERS[name](**params)
