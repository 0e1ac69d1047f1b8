"""causal-router inside LiteLLM: a routing plugin and a ``CustomLogger`` callback, for teams that already
run LiteLLM's ``Router`` or proxy (README: "Two ways in").

:class:`CausalRouterPlugin` (``Router(plugins=[...])``) asks the champion router which model to call
(in process through a :class:`~causal_router.serving.service.RouteService`, or over HTTP through
``causal-router serve``'s ``POST /v1/route``), narrows ``context.candidate_models`` to the drawn model's
deployment and puts the decision (id, model, propensity, lambda) in ``context.signals["causal_router"]``
(LiteLLM copies the signals into the call's metadata as ``routing_plugin_signals``). The callback takes
the decision by the call's text and deployment from the plugin's pending decisions, since LiteLLM writes
those signals into the caller's own metadata dict, which concurrent calls may share.

The model group's deployments are the router's models: a
deployment serves router model ``m`` when its ``litellm_params.model`` is ``m`` or ends in ``/m``, or as
``model_map`` says.

:class:`CausalRouterLogger` (``litellm.callbacks = [...]``) writes each call's outcome to the decision
log under that decision id: tokens from ``usage``, cost (LiteLLM's ``response_cost``, from the
deployment's prices), latency, status; a failed call is recorded with the gateway's rule (score 0,
:data:`~causal_router.serving.gateway.FAILED_SCORE`). Feedback (``POST /v1/feedback``) then adds the
score and keeps that cost, exactly as for the gateway's decisions.

lambda per request: ``metadata={"causal_router": {"lam": ..., "explore": ...}}`` on the call, else the
plugin's ``lam`` (None and no per-request value: the call fails with a one-line error).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import uuid
from collections import OrderedDict

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before LiteLLM is imported: never fetch

from litellm.integrations.custom_logger import CustomLogger  # noqa: E402

from ..serving.gateway import FAILED_SCORE, routing_text  # noqa: E402
from ..serving.service import BadRequest, RouteItem  # noqa: E402

__all__ = ["DECISION_KEY", "CausalRouterLogger", "CausalRouterPlugin", "RoutingError"]

#: The request-metadata key holding the decision id (read by :class:`CausalRouterLogger`).
DECISION_KEY = "causal_router_decision_id"
TOKEN_ENV = "CAUSAL_ROUTER_API_TOKEN"


class _Pending:
    """The plugin's decisions whose outcome the callback has not recorded yet, by routing text.

    LiteLLM stamps the routing signals on the caller's own metadata dict, in place: calls that share one
    dict (concurrent calls, or a callback that runs after the next call was routed) read each other's
    decision id there, and an outcome went to the wrong decision while another was lost. A decision is
    taken here by its call's routing text and served deployment; equal texts to the same deployment are
    exchangeable (the router saw the same context). ``litellm_call_id`` keeps a retry or fallback of a call
    on the decision its first event took. Bounded, the oldest entries going first, and keyed by a digest of
    the text: a plugin used without the callback holds at most ``limit`` small entries, never prompts."""

    def __init__(self, limit: int = 20_000):
        self.limit, self._lock = limit, threading.Lock()
        self._by_text: OrderedDict[bytes, list[tuple[str, str]]] = OrderedDict()  # text digest -> [(deployment, id)]
        self._by_call: OrderedDict[str, str] = OrderedDict()  # litellm_call_id -> decision id
        self._size = 0

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def put(self, text: str, deployment: str, did: str) -> None:
        text = self._key(text)
        with self._lock:
            self._by_text.setdefault(text, []).append((deployment, did))
            self._by_text.move_to_end(text)
            self._size += 1
            while self._size > self.limit:
                self._size -= len(self._by_text.popitem(last=False)[1])

    def take(self, text: str | None, served: set[str], call_id: str | None) -> str | None:
        text = None if text is None else self._key(text)
        with self._lock:
            if call_id is not None and call_id in self._by_call:
                return self._by_call[call_id]
            entries = self._by_text.get(text) if text is not None else None
            if not entries:
                return None
            i = next((k for k, (dep, _) in enumerate(entries) if dep in served), 0)
            did = entries.pop(i)[1]
            self._size -= 1
            if not entries:
                del self._by_text[text]
            if call_id is not None:
                self._by_call[call_id] = did
                if len(self._by_call) > self.limit:
                    self._by_call.popitem(last=False)
            return did


_PENDING = _Pending()


class RoutingError(RuntimeError):
    """The router could not decide (no lambda, lambda outside its interval, no deployment for its model)."""


class CausalRouterPlugin:
    """A LiteLLM routing plugin (``async run(context) -> context``) that routes with causal-router.

    Parameters
    ----------
    service : RouteService, optional
        In process (e.g. ``build_service(ServeSettings.from_params())``); or
    url : str, optional
        ``causal-router serve``'s base URL (``$CAUSAL_ROUTER_API_TOKEN`` is sent as the bearer token).
    lam, explore : float, optional
        Defaults for calls whose metadata sets none (explore None: the service's ``serve.explore``).
    model_map : dict, optional
        ``{router model: litellm_params.model}`` where the names differ otherwise.
    """

    def __init__(self, service=None, url: str | None = None, lam: float | None = None, explore: float | None = None,
                 model_map: dict | None = None, timeout: float = 10.0):
        if (service is None) == (url is None):
            raise ValueError("CausalRouterPlugin needs exactly one of service (in process) or url "
                             "(causal-router serve)")
        self.service, self.url, self.lam, self.explore = service, url and url.rstrip("/"), lam, explore
        self.model_map, self.timeout = dict(model_map or {}), timeout
        self._client = None

    async def _route(self, text: str, lam: float, explore: float | None) -> dict:
        if self.service is not None:
            e = self.service.settings.explore if explore is None else explore
            err = self.service.lam_error(self.service.holder.current, lam)
            if err:
                raise RoutingError(err)
            out = (await asyncio.to_thread(self.service.handle, [RouteItem([text], lam, e, uuid.uuid4().hex)]))[0]
            if isinstance(out, BadRequest):
                raise RoutingError(out.message)
            return out[0]
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        token = os.environ.get(TOKEN_ENV)
        body = {"prompts": [text], "lam": lam, **({"explore": explore} if explore is not None else {})}
        r = await self._client.post(self.url + "/v1/route", json=body,
                                    headers={"Authorization": f"Bearer {token}"} if token else {})
        if r.status_code != 200:
            is_json = r.headers.get("content-type", "").startswith("application/json")
            raise RoutingError(f"causal-router at {self.url} answered {r.status_code}: "
                               f"{r.json().get('message') if is_json else r.text[:200]}")
        return r.json()["decisions"][0]

    def _deployment(self, model: str, candidates: list[str]) -> str:
        want = self.model_map.get(model)
        for c in candidates:
            if c == want or (want is None and (c == model or c.endswith("/" + model))):
                return c
        raise RoutingError(f"the router chose {model!r}, and no deployment of this model group serves it "
                           f"(candidates: {candidates}); set model_map")

    async def run(self, context):
        own = context.metadata.get("causal_router") or {}
        lam = own.get("lam", self.lam)
        if lam is None:
            raise RoutingError('lam is not set: pass metadata={"causal_router": {"lam": ...}} or '
                               'CausalRouterPlugin(lam=...)')
        text = routing_text(context.structured_messages)
        d = await self._route(text, float(lam), own.get("explore", self.explore))
        deployment = self._deployment(d["model"], list(context.candidate_models))
        context.candidate_models = [deployment]
        _PENDING.put(text, deployment, d["decision_id"])
        context.metadata[DECISION_KEY] = d["decision_id"]
        context.signals["causal_router"] = {"decision_id": d["decision_id"], "model": d["model"],
                                            "propensity": d["propensity"], "lam": d["lam"]}
        return context


def _decision_id(kwargs) -> str | None:
    """The plugin's decision id: the pending decision of this call's text and deployment (see
    :class:`_Pending`), else the call's metadata: LiteLLM copies the routing signals there
    (``routing_plugin_signals``; a plugin in another process), or the metadata key itself."""
    try:
        text = routing_text(kwargs.get("messages"))
    except BadRequest:
        text = None
    model, provider = str(kwargs.get("model") or ""), kwargs.get("custom_llm_provider")
    served = {model, f"{provider}/{model}"} if provider else {model}
    found = _PENDING.take(text, served, kwargs.get("litellm_call_id"))
    if found is not None:
        return found
    for meta in ((kwargs.get("litellm_params") or {}).get("metadata"), kwargs.get("metadata")):
        if not isinstance(meta, dict):
            continue
        signal = (meta.get("routing_plugin_signals") or {}).get("causal_router") or {}
        found = signal.get("decision_id") or meta.get(DECISION_KEY)
        if found:
            return str(found)
    return None


class CausalRouterLogger(CustomLogger):
    """LiteLLM success/failure callback writing each routed call's outcome to the decision log.

    ``store``: a :class:`~causal_router.serving.store.DecisionStore` or its URI (None: the project's
    decision log, ``$CAUSAL_ROUTER_DECISIONS_URI``)."""

    def __init__(self, store=None):
        super().__init__()
        from ..serving.store import DecisionStore

        self.store = store if isinstance(store, DecisionStore) else DecisionStore(store)
        self.recorded: list[str] = []

    def _record(self, kwargs, response, start, end, exc=None) -> None:
        from ..serving.store import DuplicateFeedback

        did = _decision_id(kwargs)
        if did is None:  # a call the plugin did not route
            return
        usage = getattr(response, "usage", None) if response is not None else None
        tin = getattr(usage, "prompt_tokens", None) if usage is not None else None
        tout = getattr(usage, "completion_tokens", None) if usage is not None else None
        cost = kwargs.get("response_cost")
        status, code = "ok", 200
        if exc is not None:
            status = "timeout" if "timeout" in type(exc).__name__.lower() else "error"
            code = None if status == "timeout" else getattr(exc, "status_code", None)
            cost = cost or 0.0
        latency = (end - start).total_seconds() * 1000 if start is not None and end is not None else None
        try:
            self.store.add_outcome({
                "decision_id": did, "source": "litellm", "served_model": kwargs.get("model"), "status": status,
                "upstream_status": code if isinstance(code, int) else None, "input_tokens": tin,
                "output_tokens": tout, "cost": None if cost is None else float(cost), "latency_ms": latency,
                "error": None if exc is None else type(exc).__name__})
            if exc is not None:
                self.store.add_feedback(did, FAILED_SCORE, float(cost), tout)
        except DuplicateFeedback:  # a retry or fallback of the same decision: its first outcome stands
            return
        self.recorded.append(did)

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        await asyncio.to_thread(self._record, kwargs, response_obj, start_time, end_time)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        exc = kwargs.get("exception") or RuntimeError("upstream failed")
        await asyncio.to_thread(self._record, kwargs, response_obj, start_time, end_time, exc)

    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._record(kwargs, response_obj, start_time, end_time)

    def log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._record(kwargs, response_obj, start_time, end_time, kwargs.get("exception") or RuntimeError("failed"))
