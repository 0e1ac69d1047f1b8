"""The loop's registry side: every round's router logged and registered in MLflow with its lineage,
the registry's promotion gate, and the champion served as ``causal-router serve`` loads it."""

from __future__ import annotations

from pathlib import Path

from ..causal.nuisances import NuisanceConfig
from .rounds import GATE
from .steps import read_logs


class RegistryHooks:
    """``register`` / ``promote`` / ``served`` for :func:`causal_router.loop.rounds.run_rounds`.

    Parameters
    ----------
    root : path       project folder of the loop (``mlruns/`` under it unless MLFLOW_TRACKING_URI is set)
    lam : float       the lambda the endpoint router is registered at
    encoder : LookupEncoder     features of the holdout prompts
    nuisances : NuisanceConfig  of the gate's held-out nuisances
    prices : price sheet or None
    params : dict     logged with every round's run
    interval : bool   register the interval router (a loop under a budget) instead of the endpoint at ``lam``
    """

    def __init__(self, root, lam: float, encoder, nuisances: NuisanceConfig, prices=None, params: dict | None = None,
                 interval: bool = False):
        from ..registry.names import INTERVAL_NAME, endpoint_name
        from ..registry.tracking import configure

        self.root = Path(root).resolve()
        self.lam = float(lam)
        self.encoder = encoder
        self.nuisances = nuisances
        self.prices = prices
        self.params = dict(params or {})
        self.interval = bool(interval)
        self.name = INTERVAL_NAME if self.interval else endpoint_name(self.lam)
        self.decisions: list = []
        configure(self.root)

    def register(self, rs, r: int, data_dir) -> str:
        """Log round ``r``'s router set (saved by the training stage) and register it as ``challenger``,
        tagged with the data version it was trained on."""
        from ..registry.lineage import collect_lineage
        from ..registry.names import CHALLENGER
        from ..registry.runs import log_training_run, register_routers

        rs_dir = self.root / "routers" / f"round-{r}"  # where the loop saves round r's training
        tags = collect_lineage(self.root, {"logs": Path(data_dir).resolve()})
        tags |= {"loop.round": str(r)}
        run_id = log_training_run(rs_dir, [], {**self.params, "round": r}, tags, run_name=f"loop-round-{r}")
        versions = register_routers(run_id, rs_dir, [] if self.interval else [self.lam], alias=CHALLENGER,
                                    tags={**tags, "run_id": run_id})
        return versions[self.name]

    def promote(self, rs, version: str, r: int, data_dir, lam: float | None = None) -> bool:
        """The registry's gate on the newest holdout, at ``lam`` (default the loop's): moves ``champion``
        only on evidence."""
        from ..registry.promote import promote

        logs = read_logs(data_dir, self.encoder)
        d = promote(self.name, *logs["holdout"], lam=[self.lam if lam is None else float(lam)],
                    nuisances=self.nuisances, prices=self.prices, **GATE, support=[logs["train"], logs["val"]])
        self.decisions.append({"round": r, **{k: v for k, v in d.to_dict().items()
                                              if k in ("decision", "reason", "challenger_version")}})
        return d.promoted

    def served(self):
        """The champion with the challenger it explores towards, loaded from the registry as the
        service loads them."""
        from ..registry.names import CHALLENGER, CHAMPION
        from ..serving.model import ModelHolder

        return ModelHolder(f"models:/{self.name}@{CHAMPION}", poll_seconds=0, challenger_alias=CHALLENGER).current
