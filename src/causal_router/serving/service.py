"""The routing service without HTTP: :class:`RouteService` routes micro-batches of requests with the
current model, draws each decision from the exploring policy, logs it (committed) and costs feedback.

:func:`build_service` assembles one from :class:`~causal_router.serving.settings.ServeSettings`: the
registered model (polled for alias moves), the decision log, the encoder (refused when the router was
trained on other features) and the price sheet. :mod:`causal_router.serving.api` puts it behind HTTP;
the deployment loop (:mod:`causal_router.loop`) calls :meth:`RouteService.handle` directly.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.schema import propensities_json
from ..features.encoders import check_features, encoder_for, resolve_encoder
from ..policy.budget import fill_probabilities
from ..policy.exploration import ExplorationPolicy, pool_probabilities
from ..validation.plausibility import limits_from
from .logfile import LogBusy
from .model import ModelHolder, ServedModel
from .settings import ServeSettings
from .store import DecisionStore, now

log = logging.getLogger("causal_router.serving")

__all__ = ["BadRequest", "RouteItem", "RouteService", "build_service", "check_encoder", "decision_id", "file_stamp",
           "load_encoder"]


@dataclass
class RouteItem:
    prompts: list
    lam: float | None  # None: the budget controller's (serving/budget.py)
    explore: float
    request_id: str
    budget: str = ""  # with serve.budget: "controlled", "override" or "capped"
    fill: float = 0.0  # the budget's slack: this share moves to the models ``fill_to`` (policy.budget)
    fill_to: tuple = ()


class BadRequest(Exception):
    """A request the current model cannot answer (e.g. lam outside its interval after a reload)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def load_encoder(settings: ServeSettings, model: ServedModel):
    """The encoder for ``model``: ``settings.encoder`` (``module:callable`` or ``static``), else the one
    the router recorded (its encoder folder, the static encoder its features' key names, or the default
    encoder); refuses one whose features the router was not trained on
    (:class:`~causal_router.features.encoders.EncoderMismatchError`)."""
    enc = (resolve_encoder(settings.encoder) if settings.encoder
           else encoder_for(model.encoder_key, model.encoder_path or None))
    check_encoder(model, enc)
    return enc


def check_encoder(model: ServedModel, enc) -> None:
    check_features(model.encoder_key, enc, f"{model.name} version {model.version}",
                   "set serve.encoder (params.yaml) to a module:callable returning that encoder")


def decision_id(stamp_ns: int, index: int) -> str:
    """A 32-hex-digit decision id that sorts in the order the decisions were made: the batch's time
    in nanoseconds, the decision's index in the batch, then 48 random bits. The decisions of one
    batch share a timestamp, and the logs order rows by (timestamp, id): with random ids their order,
    and which of them the holdout takes, would change from run to run."""
    return f"{stamp_ns:016x}{index:04x}{uuid.uuid4().hex[:12]}"


def file_stamp(path) -> tuple | None:
    """(mtime, size) of ``path``, None when absent: what says a file changed."""
    try:
        st = os.stat(path) if path is not None else None
    except OSError:
        return None
    return None if st is None else (st.st_mtime_ns, st.st_size)


class RouteService:
    """Routes batches of requests with the current model and logs the decisions."""

    def __init__(self, settings: ServeSettings, holder: ModelHolder, store: DecisionStore, encoder,
                 rng: np.random.Generator, prices: dict | None = None, price_path: Path | None = None):
        self.settings = settings
        self.holder = holder
        self.store = store
        self.encoder = encoder
        self.rng = rng
        self.prices = prices or {}
        # the price sheet is read again when its file changes: a new price holds from the next request
        self.price_path = price_path
        self._price_stamp = file_stamp(price_path)
        #: the models served now (serve.models; None: the router's). The loop sets it per round.
        self.pool = list(settings.models) if settings.models else None
        self._outcomes, self._outcomes_at, self._first = {}, float("-inf"), None
        self.policy = ExplorationPolicy(settings.explore, settings.floor, settings.temperature,
                                        settings.challenger_share, settings.strategy, settings.posterior_scale)
        self.counts = store.counts_by_model()
        self._counts_lock = threading.Lock()
        self.limits = limits_from(self.prices, settings.max_tokens, settings.max_cost, settings.cost_factor)
        self.budget = None  # a BudgetGovernor with serve.budget (build_service)

    def refresh_prices(self) -> None:
        """Read the price sheet again if its file changed (a bad sheet keeps the old prices, logged)."""
        stamp = file_stamp(self.price_path)
        if stamp == self._price_stamp:
            return
        from ..settings.prices import load_prices

        try:
            prices = load_prices(self.price_path)
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.error("price sheet %s changed but could not be read (%s): keeping the old prices", self.price_path, err)
            self._price_stamp = stamp
            return
        self.prices, self._price_stamp = prices, stamp
        self.limits = limits_from(self.prices, self.settings.max_tokens, self.settings.max_cost,
                                  self.settings.cost_factor)
        if self.budget is not None and hasattr(self.budget, "prices"):
            self.budget.prices = prices
        log.warning("price sheet %s changed: new prices from this request on", self.price_path)

    def outcomes(self, model: ServedModel, pool) -> dict:
        """Outcomes per pool model (what ends its cold start): the decision log's ingested feedback rows
        (re-read every ``poll_seconds``) of a model new to the deployment; an old model counts as warm,
        however rare, and explores by the policy. New: a model the served router does not route among, or
        one that joined the pool after the log began (absent from its first exploring decision's
        propensities, :meth:`DecisionStore.first_pool`): its share holds until ``cold_start_outcomes``
        outcomes even after a retrain takes it in (a router fitted on its few rows may drop it). (A share
        for every model under ``cold_start_outcomes`` rows changed the stationary loop: RouterBench seed 0,
        explore 0.05, causal ended at 0.7248 instead of 0.7853.)"""
        if time.monotonic() - self._outcomes_at >= self.settings.poll_seconds:
            self._outcomes, self._outcomes_at = self.store.outcomes_by_model(), time.monotonic()
            if self._first is None:
                self._first = self.store.first_pool()
        old = set(model.models) & (self._first if self._first is not None else set(model.models))
        return {m: float("inf") if m in old else self._outcomes.get(m, 0) for m in pool}

    def lam_error(self, model: ServedModel, lam: float) -> str | None:
        lo, hi = model.lam_range
        if lo <= lam <= hi:
            return None
        where = f"[{lo:g}, {hi:g}]" if lo < hi else f"{lo:g} (an endpoint router)"
        return (f"lam must be within the router's lambda interval {where} ({model.name} version "
                f"{model.version}), got {lam:g}")

    def tokens(self, model: ServedModel, prompts) -> np.ndarray | None:
        """The router's input-token estimate per prompt (characters x the logs' tokens per character)."""
        tpc = model.tokens_per_char
        return None if not tpc else np.array([len(p) * float(tpc) for p in prompts])

    def handle(self, items: list[RouteItem]) -> list:
        """Route a batch: :meth:`prepare`, then :meth:`commit` (the micro-batcher runs the two in
        their own threads, so that a batch's commit overlaps the next batch's work)."""
        return self.commit(self.prepare(items))

    def commit(self, prepared: tuple, wait: bool = True) -> list:
        """Commit a prepared batch's decisions (one transaction) and return its results: nothing is
        returned, hence acknowledged, before its decisions are in the log. A failed commit takes the
        batch's decisions back out of the exploration counts. ``wait=False`` (the micro-batcher's lone
        request, on the event loop): :class:`~.logfile.LogBusy`, nothing written, where the commit would
        wait for another writer or travel the network (PostgreSQL)."""
        rows, results = prepared
        if not wait and not self.store.is_sqlite:
            raise LogBusy("a PostgreSQL commit is not made on the event loop")
        try:
            # committed before any response leaves
            self.store.add_decisions(rows) if wait else self.store.add_decisions(rows, wait=False)
        except LogBusy:
            raise  # nothing written: the caller commits this batch again, waiting
        except BaseException:
            with self._counts_lock:
                for r in rows:
                    self.counts[r["model"]] -= 1
            raise
        return results

    def prepare(self, items: list[RouteItem]) -> tuple:
        """A batch's decisions, not committed yet: (rows, results). One embedding call and one scoring
        and exploration pass per group of requests that share their lambda and exploration rate (a batch
        of one-prompt requests costs about one request's scoring, not one per request: the routers'
        ``scores`` carry a fixed per-call cost, e.g. sklearn's input validation). Probabilities are
        row-wise, so grouping changes no propensity; the draws take the random stream in request order
        as one call per request did. The exploration counts include these decisions from here on (as
        the next batch would have seen them had this one committed first); texts the log refuses raise
        :class:`~causal_router.serving.store.BadText` here."""
        self.refresh_prices()
        model = self.holder.current
        pool = self.pool or list(model.models)
        outcomes = self.outcomes(model, pool) if self.settings.cold_start_share > 0 else None
        texts = [p for it in items for p in it.prompts]
        X = np.asarray(self.encoder.encode(texts), dtype=np.float32)
        counts = np.array([self.counts.get(m, 0) for m in model.models], dtype=float)
        created = now()
        stamp = time.time_ns()
        spans, results, groups, start = [], [None] * len(items), {}, 0
        for i, it in enumerate(items):
            n = len(it.prompts)
            spans.append((start, start + n))
            start += n
            if self.budget is not None:
                it.lam, it.budget = self.budget.resolve(it.lam, model.lam_range)
                if it.budget == "controlled":
                    it.fill, it.fill_to = self.budget.fill_for(model.models)
            err = "lam: is required" if it.lam is None else self.lam_error(model, it.lam)
            if err:
                results[i] = BadRequest(422, err)
                continue
            # capped requests get the cap's probabilities, whatever their lambda: one group
            key = ("capped",) if it.budget == "capped" else (float(it.lam), float(it.explore), it.fill, it.fill_to)
            groups.setdefault(key, []).append(i)
        P_all = np.zeros((len(texts), len(pool)))
        toks = self.tokens(model, texts)
        for members in groups.values():
            it = items[members[0]]
            rows_of = np.concatenate([np.arange(*spans[i]) for i in members])
            Xg, tok = X[rows_of], None if toks is None else toks[rows_of]
            guide = model.challenger_choice(Xg, it.lam, tok) if it.explore > 0 else None
            post = model.posterior(Xg, it.lam, tok) if it.explore > 0 and self.policy.strategy == "thompson" else None
            S = model.scores(Xg, it.lam, tok)
            P = self.policy.probabilities(S, it.explore, counts, guide, post)
            if it.fill > 0 and it.budget != "capped":
                P = fill_probabilities(P, S, [m in it.fill_to for m in model.models], it.fill,
                                       self.policy.floor if it.explore > 0 else 0.0)
            if it.budget == "capped":  # the hard cap: the cheapest model, propensity 1
                P = self.budget.cap(P, model.models,
                                    lambda X=Xg, t=tok: model.scores(X, model.lam_range[1], t))
            # onto the served pool: removed models 0, new ones their cold-start share while exploring
            cold = self.settings.cold_start_share if it.explore > 0 and it.budget != "capped" else 0.0
            P_all[rows_of] = pool_probabilities(P, model.models, pool, outcomes, cold,
                                                self.settings.cold_start_outcomes)
        served = [i for i in range(len(items)) if results[i] is None]
        order = np.concatenate([np.arange(*spans[i]) for i in served]) if served else np.zeros(0, dtype=int)
        idx, prop = self.policy.draw(P_all[order], self.rng) if len(order) else ((), ())
        rows, drawn = [], iter(zip(order, idx, prop))
        for i in served:
            it, out = items[i], []
            for j in range(len(it.prompts)):
                r, k, p = next(drawn)
                did = decision_id(stamp, len(rows))
                row = {"decision_id": did, "created_at": created, "request_id": it.request_id,
                       "prompt": it.prompts[j], "model": pool[k], "propensity": float(p),
                       "lam": float(it.lam), "explore": float(it.explore), "router_name": model.name,
                       "router_version": model.version,
                       # a count: whole tokens, as logs and price sheets have them
                       "input_tokens": None if toks is None else int(round(toks[r])),
                       "propensities": propensities_json(pool, P_all[r])}
                rows.append(row)
                out.append({"decision_id": did, "model": row["model"], "propensity": row["propensity"],
                            "router_version": model.version, "lam": row["lam"],
                            **({"budget": it.budget} if it.budget else {})})
            results[i] = out
        self.store.check_texts(rows)
        with self._counts_lock:  # commit() (another thread) takes a failed batch back out
            for r in rows:
                self.counts[r["model"]] = self.counts.get(r["model"], 0) + 1
        return rows, results

    def priced(self, decision: dict, output_tokens: int | None) -> float:
        """:meth:`cost`, refused (ValueError) above the plausibility limit."""
        cost = self.cost(decision, output_tokens)
        why = self.limits.cost_error(cost)
        if why:
            raise ValueError(f"the cost priced from output_tokens is implausible: {why}")
        return cost

    def cost(self, decision: dict, output_tokens: int | None) -> float:
        """USD cost of a decision from the price sheet (as it is now) and its token counts."""
        self.refresh_prices()
        if output_tokens is None:
            raise ValueError("cost is missing: send cost, or output_tokens so that it can be computed "
                             "from the price sheet")
        model = decision["model"]
        if model not in self.prices:
            raise ValueError(f"cost is missing and the price sheet has no price for model {model!r}: send cost")
        if decision.get("input_tokens") is None:
            raise ValueError("cost is missing and the decision has no input token count: send cost")
        pin, pout = self.prices[model]
        return (float(decision["input_tokens"]) * pin + float(output_tokens) * pout) / 1e6


def build_service(settings: ServeSettings, holder: ModelHolder | None = None, store: DecisionStore | None = None,
                  encoder=None) -> RouteService:
    """A :class:`RouteService` from ``settings``; ``holder``, ``store`` and ``encoder`` are built when not
    given (tests inject them). The project (``mlruns/``, ``decisions/``, a relative price sheet) is
    ``settings.root``, else the one found from the current folder. Raises
    :class:`~causal_router.features.encoders.EncoderMismatchError` for an encoder whose features the
    served router was not trained on; after a reload, the holder refuses such a model the same way."""
    from ..registry.names import CHALLENGER
    from ..registry.tracking import configure
    from ..settings.env import find_project_root
    from ..settings.prices import load_prices
    from .store import default_uri

    root = Path(settings.root) if settings.root else (find_project_root() or Path("."))
    if holder is None:
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            configure(root)
        holder = ModelHolder(settings.model_uri, settings.poll_seconds,
                             challenger_alias=CHALLENGER if settings.challenger_share > 0 else None)
    if store is None:
        store = DecisionStore(settings.decisions_uri or default_uri(root))
    if encoder is None:
        encoder = load_encoder(settings, holder.current)
    else:
        check_encoder(holder.current, encoder)
    holder._on_change = lambda m: check_encoder(m, encoder)
    path = settings.price_sheet(root)
    prices = load_prices(path) if path is not None and path.is_file() else None
    if path is not None and prices is None:
        log.warning("price sheet %s not found: feedback must carry its cost", path)
    seed = settings.seed
    rng = np.random.default_rng(None if seed is None else [int(seed), *(
        [os.getpid()] if os.environ.get("CAUSAL_ROUTER_SERVE_MULTIWORKER") else [])])
    service = RouteService(settings, holder, store, encoder, rng, prices, path)
    if settings.budget is not None:
        from .budget import BudgetGovernor

        service.budget = BudgetGovernor(settings, store, holder.current.lam_range, prices)
    return service
