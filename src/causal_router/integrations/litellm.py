"""causal-router inside LiteLLM: a routing plugin and a ``CustomLogger`` callback, for teams that already
run LiteLLM's ``Router`` or proxy (README: "Two ways in").

:class:`CausalRouterPlugin` (``Router(plugins=[...])``) asks the champion router which model to call
(in process through a :class:`~causal_router.serving.service.RouteService`, or over HTTP through
``causal-router serve``'s ``POST /v1/route``), narrows ``context.candidate_models`` to the drawn model's
deployment and puts the decision (id, model, propensity, lambda) in ``context.signals["causal_router"]``
(LiteLLM copies the signals into the call's metadata as ``routing_plugin_signals``, where the callback
finds the decision id). The model group's deployments are the router's models: a
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
import os
import uuid

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before LiteLLM is imported: never fetch

from litellm.integrations.custom_logger import CustomLogger  # noqa: E402

from ..serving.gateway import FAILED_SCORE, routing_text  # noqa: E402
from ..serving.service import BadRequest, RouteItem  # noqa: E402

__all__ = ["DECISION_KEY", "CausalRouterLogger", "CausalRouterPlugin", "RoutingError"]

#: The request-metadata key holding the decision id (read by :class:`CausalRouterLogger`).
DECISION_KEY = "causal_router_decision_id"
TOKEN_ENV = "CAUSAL_ROUTER_API_TOKEN"


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
        context.candidate_models = [self._deployment(d["model"], list(context.candidate_models))]
        context.metadata[DECISION_KEY] = d["decision_id"]
        context.signals["causal_router"] = {"decision_id": d["decision_id"], "model": d["model"],
                                            "propensity": d["propensity"], "lam": d["lam"]}
        return context


def _decision_id(kwargs) -> str | None:
    """The plugin's decision id: LiteLLM copies the routing signals into the call's metadata
    (``routing_plugin_signals``); the metadata key itself is checked too."""
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
