"""The promotion gate over every registered router, on the held-out logs named in params.yaml."""

from __future__ import annotations

from pathlib import Path

from ..settings.params import Settings
from . import stages


def holdout_features(root, p: Settings, split: str = "holdout"):
    """(held-out logs, their features (n, d)): embeddings from the pipeline, else embedded now.
    ``split``: ``train`` or ``val`` for those logs instead (params.yaml's ``data`` paths)."""
    from ..validation.loaders import load_logs

    logs = load_logs(Path(root) / getattr(p.data, split))
    try:
        X = stages.load_embeddings(Path(root) / p.artifacts / "embeddings", split, logs["prompt_id"])
    except (FileNotFoundError, KeyError):
        from ..features.embed import embed_texts

        X = embed_texts(logs["prompt"].astype(str).tolist())
    return logs, X


def support_features(root, p: Settings) -> list | None:
    """The training logs (train, val) with their features, a list of (logs, X (m, d)), for the gate's
    outcome models when ``promote.outcome_rows`` is ``train+holdout``; else None (nothing read)."""
    from ..promotion.gate import uses_training_rows

    if not uses_training_rows(p.promote.outcome_rows):
        return None
    return [holdout_features(root, p, split) for split in ("train", "val")]


def router_names(p: Settings) -> list[str]:
    """The interval router and one endpoint router per grid lambda."""
    from ..registry.names import INTERVAL_NAME, endpoint_name

    return [INTERVAL_NAME] + [endpoint_name(lam) for lam in p.train.lambdas]


def record_gate(root, decisions: list, p: Settings) -> str:
    """The gate's own MLflow run (evidence, decisions, the holdout as input, links to the versions),
    then the retention rule: per router, versions that never became champion beyond the newest
    ``promote.keep_versions`` (params.yaml; default 5) are deleted. Returns the run id."""
    from ..registry.lifecycle import log_promotion_run, prune_versions
    from ..registry.tracking import configure

    configure(root)
    settings = {**p.promote.model_dump(), "clip": p.crossfit.clip}
    run_id = log_promotion_run(decisions, settings, Path(root) / p.data.holdout)
    keep = p.promote.keep_versions
    if keep is not None:
        for d in decisions:
            prune_versions(d.name, int(keep))
    return run_id


def gate(root, name: str, logs, X, p: Settings, support=None):
    """One promotion decision (see :func:`causal_router.registry.promote.promote`); ``support``: the
    training logs for the evidence's outcome models (:func:`support_features`, read once for every name)."""
    from ..causal.nuisances import NuisanceConfig
    from ..registry.names import INTERVAL_NAME
    from ..registry.promote import promote
    from ..registry.tracking import configure
    from ..settings.prices import load_prices

    configure(root)
    lambdas = p.promote.lambdas if name == INTERVAL_NAME else None
    prices = p.crossfit.prices
    return promote(name, logs, X, lam=lambdas, **p.promote.gate(), support=support,
                   nuisances=NuisanceConfig.from_params(p.crossfit.model_dump()),
                   prices=load_prices(Path(root) / prices) if prices else None)
