"""One round's steps: the incumbent's logs, serving through the service's code, feedback, ingest,
retraining through the one training path, and the promotion gate (:mod:`causal_router.promotion.gate`).

Serving is :class:`causal_router.serving.service.RouteService` itself (the exploration policy, the draws and
the append-only decision log of ``causal-router serve``), fed the stream's cached features;
:func:`causal_router.serving.ingest.ingest` appends the decisions with feedback to the logs;
retraining is :func:`causal_router.policy.training.fit_routing_data` then ``train_routerset``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..causal.nuisances import NuisanceConfig
from ..data import schema as S
from ..promotion.gate import GateDecision, GateSettings, Policy, decide, uses_training_rows
from ..serving.logrows import HOLDOUT, TRAIN, VAL
from .stream import LookupEncoder, Stream

#: Shares of round 0's logs that become train, val (early stopping) and the gate's first holdout.
ROUND0_SPLIT = (0.6, 0.2, 0.2)


def incumbent_logs(stream: Stream, idx: np.ndarray, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """The incumbent routes prompts ``idx`` (m,): logs as ``simulate`` draws them, with propensities,
    the incumbent's probability vectors and timestamps in stream order; returns (logs (m rows),
    chosen model indices (m,))."""
    from ..data.simulate import log_frame  # the simulate protocol's own log rows
    from ..policy.exploration import ExplorationPolicy

    chosen, _ = ExplorationPolicy.draw(stream.incumbent[idx], rng)
    logs = log_frame(stream.ff, np.asarray(idx), chosen, stream.incumbent)
    start = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=1)
    logs[S.TIMESTAMP] = start + pd.to_timedelta(np.arange(len(logs)), unit="s")
    return logs, chosen


def write_round0(logs: pd.DataFrame, data_dir) -> dict:
    """Round 0's logs as train / val / holdout (stream order: the newest part is the holdout)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    n = len(logs)
    a, b = int(round(ROUND0_SPLIT[0] * n)), int(round((ROUND0_SPLIT[0] + ROUND0_SPLIT[1]) * n))
    parts = {TRAIN: logs.iloc[:a], VAL: logs.iloc[a:b], HOLDOUT: logs.iloc[b:]}
    for name, part in parts.items():
        part.reset_index(drop=True).to_parquet(data_dir / name, index=False)
    return {k: len(v) for k, v in parts.items()}


@dataclass
class Holder:
    """What the service's router reads: the model it answers with now (``ModelHolder`` without polling)."""

    current: object


def served_model(routerset, method: str, lam: float, version: str, name: str = "loop", challenger=None,
                 challenger_version: str = "", lam_range=None):
    """A trained router set as the service's :class:`~causal_router.serving.model.ServedModel`
    (``challenger``: a router set not promoted, whose choices the exploration favours; ``lam_range``:
    the interval it answers, default ``lam`` alone)."""
    from ..serving.model import ServedModel

    lo, hi = (lam, lam) if lam_range is None else lam_range

    def make(rs, v):
        return ServedModel(name=name, version=str(v), models=list(rs.models), router=rs.get(method),
                           lam_range=(float(lo), float(hi)), tokens_per_char=rs.meta.get("tokens_per_char"),
                           encoder_key="", rows_per_model=rs.meta.get("rows_per_model"))

    return make(routerset, version).with_challenger(
        None if challenger is None else make(challenger, challenger_version))


def make_service(stream: Stream, holder, store, explore: float, seed: int, floor: float | None = None,
                 **overrides):
    """The service's routing object (``serving.service.RouteService``) over the stream's cached features.

    ``floor`` defaults to ``explore / (2 (K - 1))``: half the exploration is spread evenly, so that
    the total exploration is ``explore`` rather than the service default's ``(K - 1) * 0.01``.
    ``overrides``: other serve settings (``challenger_share``, ``strategy``, ``posterior_scale``;
    None values ignored), else the service's defaults (``ServeSettings``).
    """
    from ..serving.service import RouteService
    from ..serving.settings import ServeSettings

    K = len(stream.models)
    floor = explore / (2 * max(K - 1, 1)) if floor is None else floor
    extra = {k: v for k, v in overrides.items() if v is not None}
    extra.setdefault("poll_seconds", 0)  # the cold start reads the outcomes each round (deterministic)
    settings = ServeSettings(explore=float(explore), floor=float(floor), seed=seed, **extra)
    return RouteService(settings, holder, store, LookupEncoder(stream.ff.prompts, stream.X),
                        np.random.default_rng(seed))


def serve_round(service, stream: Stream, idx: np.ndarray, explore: float, reported=None) -> np.ndarray:
    """The service routes prompts ``idx`` (m,) and logs each decision; each outcome, read from the
    table, goes back as feedback (``reported(scores (m,)) -> bool (m,)``: only to those decisions; the
    others stay without feedback, never training rows). Returns the chosen model indices (m,)."""
    from ..serving.service import RouteItem

    ff = stream.ff
    prompts = [str(p) for p in ff.prompts[idx]]
    out = service.handle([RouteItem(prompts, stream.lam, float(explore), uuid.uuid4().hex)])[0]
    if isinstance(out, Exception):
        raise out
    index = {m: k for k, m in enumerate(stream.models)}
    chosen = np.array([index[d["model"]] for d in out], dtype=int)
    keep = np.ones(len(idx), bool) if reported is None else reported(ff.scores[idx, chosen])
    for i, k, d, fed in zip(idx, chosen, out, keep):
        if fed:
            feed_back(service, ff, i, k, d["decision_id"])
    return chosen


def feed_back(service, ff, i: int, k: int, decision_id: str) -> float:
    """Prompt ``i``'s outcome under model ``k``, read from the table, as the decision's feedback (its
    output tokens where the table has them); returns its cost."""
    tokens = None
    if ff.output_tokens is not None and np.isfinite(ff.output_tokens[i, k]):
        tokens = int(ff.output_tokens[i, k])
    cost = float(ff.costs[i, k])
    service.store.add_feedback(decision_id, float(ff.scores[i, k]), cost, tokens)
    return cost


def read_logs(data_dir, encoder: LookupEncoder) -> dict:
    """``{split: (logs, X (n, d))}`` of the loop's data folder (train, val, holdout)."""
    out = {}
    for name in (TRAIN, VAL, HOLDOUT):
        path = Path(data_dir) / name
        if path.is_file():
            logs = pd.read_parquet(path)
            out[name.split(".")[0]] = (logs, encoder.encode(logs[S.PROMPT].astype(str)).astype(float))
    return out


def n_logged(data_dir) -> int:
    return sum(len(pd.read_parquet(p)) for p in (Path(data_dir) / n for n in (TRAIN, VAL, HOLDOUT)) if p.is_file())


def train_round(data_dir, encoder: LookupEncoder, models, lam, methods, nuisances: NuisanceConfig,
                prices=None, out_dir=None, pool=None):
    """Retrain on the logs under ``data_dir`` through the one training path (``lam``: a lambda, or a
    grid); returns the RouterSet. ``pool`` (optional): the models served now; the arms are then those of
    ``models`` in the pool or in the logs (a model not served yet is no arm)."""
    from ..policy.training import fit_routing_data, train_routerset

    logs = read_logs(data_dir, encoder)
    train, X = logs["train"]
    val, X_val = logs["val"]
    if pool is not None:
        logged = set(train[S.MODEL]) | set(val[S.MODEL])
        models = [m for m in models if m in set(pool) | logged]
    data, meta = fit_routing_data(train, X, val, X_val, models=list(models), prices=prices, nuisances=nuisances)
    grid = [float(x) for x in np.atleast_1d(lam)]
    return train_routerset(data, grid, list(methods), meta=meta, out_dir=out_dir)


def gate(challenger, champion, holdout: pd.DataFrame, X: np.ndarray, lam: float, method: str,
         nuisances: NuisanceConfig, prices=None, alpha: float = 0.05, margin: float = 0.0,
         overlap: float | None = None, rule: str | None = None, no_overlap: str | None = None,
         outcome_rows: str | None = None, support=None) -> GateDecision:
    """The promotion gate (:func:`causal_router.promotion.gate.decide`) on the loop's router sets
    (``method`` at ``lam``) and its holdout, without the registry (``overlap``, ``rule``, ``no_overlap``,
    ``outcome_rows``: None, the gate's defaults). ``support``: the training logs, a list of (logs, X (m, d)),
    that the evidence's outcome models learn from too when ``outcome_rows`` is ``train+holdout``."""
    from ..policy.data import holdout_evidence

    given = {"overlap": overlap, "rule": rule, "no_overlap": no_overlap, "outcome_rows": outcome_rows}
    settings = GateSettings(alpha=alpha, margin=margin, lambdas=[lam],
                            **{k: v for k, v in given.items() if v is not None})  # None: the gate's defaults
    if champion is None:  # the first champion: nothing to weigh
        return decide(Policy.of(challenger, method), None, None, settings)
    rows = support if uses_training_rows(settings.outcome_rows) else None
    return decide(Policy.of(challenger, method), Policy.of(champion, method),
                  lambda models: holdout_evidence(holdout, X, models, nuisances, prices, rows), settings)


def greedy_actions(routerset, method: str, stream: Stream, idx, lam: float | None = None) -> np.ndarray:
    """The router's choice (explore 0) on prompts ``idx`` at ``lam`` (default ``stream.lam``), as indices
    into the stream's models (the router's may be fewer)."""
    idx = np.asarray(idx)
    lam = stream.lam if lam is None else lam
    k = np.asarray(routerset.get(method).predict(stream.X[idx], lam, stream.input_tokens(idx)), dtype=int)
    return np.array([stream.models.index(m) for m in routerset.models], dtype=int)[k]
