"""The gateway: ``POST /v1/chat/completions`` (the OpenAI schema) routes the conversation with the
served router, calls the chosen model (directly where it is OpenAI-compatible, else through LiteLLM:
:mod:`.upstream`) and records the call's outcome (``causal-router serve --gateway GATEWAY.yaml``; the
file: :mod:`.gateway_config`).

Request
-------
The OpenAI chat-completions body, with ``model`` = ``serve.gateway_model`` (``causal-router``).
Everything but ``model`` and ``causal_router`` goes to the upstream unchanged.

- **Routed text**: the last ``user`` message's text (a string, or its ``text`` parts joined by
  newlines); the earlier turns are not routed on. Its length limit is ``/v1/route``'s
  (``serve.max_prompt_chars``, 413 beyond it); it is the decision's ``prompt`` in the log.
- **lambda**, first found: the body's ``causal_router: {"lam": float, "explore": float}`` (the openai
  client's ``extra_body``), the header ``x-causal-router-lam``, the budget controller's (``serve.budget``,
  :mod:`.budget`), ``serve.lam``; none -> 422. ``explore``:
  the body's, else ``serve.explore``.
- Auth, request ids and the body limit are ``/v1/route``'s (the same middleware); the decision is
  drawn by the same :class:`~.service.RouteService` (micro-batched, committed before the call).

Response
--------
The upstream's response with ``model`` set to the chosen ``model_name``, and the headers
``x-causal-router-decision-id``, ``-model``, ``-propensity`` and ``-lam`` (plus ``-fallback-of`` for a
fallback's answer, and ``-budget`` with ``serve.budget``). ``stream: true`` streams the upstream's chunks
(server-sent events); the gateway asks the upstream for usage (``stream_options.include_usage``) and
passes the usage chunk on only when the client asked for it.

What is recorded (``outcomes``, one row per call, committed before a non-streamed response leaves; at
the end of a stream): the model that answered, the upstream status, input and output tokens from
``usage``, ``cost`` = those tokens x the file's prices (USD), the latency of the upstream call.

Failures (docs/reliability.md)
------------------------------
An upstream error or timeout is the decision's outcome: ``status`` ``error`` or ``timeout``, the cost
incurred (the usage the upstream reported; 0 when it reported none), and feedback recorded by the
gateway itself with score :data:`FAILED_SCORE` (the caller got no answer from that model), so the row
reaches the logs with the policy's propensity and a later feedback for it gets 409. With
``router_settings.fallbacks`` (LiteLLM's semantics) the next model is called; its answer is a separate
decision with ``fallback_of`` = the policy's decision id and propensity 1 (the fallback rule, not a
policy, chose it), which ingest keeps out of the training logs. When every model failed: a JSON 502
naming the upstream(s), never a traceback or a key. A stream that breaks after its first chunk ends
with an ``error`` event; its outcome is ``error`` with the usage seen so far.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from .gateway_config import GatewayConfig, reload_gateway
from .service import BadRequest, RouteItem, file_stamp
from .upstream import UpstreamError, Upstreams

log = logging.getLogger("causal_router.serving.gateway")

__all__ = ["FAILED_SCORE", "LAM_HEADER", "Gateway", "gateway_routes", "recorded_cost", "routing_text"]

#: Score of a decision whose upstream call failed (recorded by the gateway as its feedback).
FAILED_SCORE = 0.0
LAM_HEADER = "x-causal-router-lam"
_OWN = ("model", "causal_router")
#: LiteLLM call parameters a client must not send: they would redirect the call (with the file's key),
#: fake its answer or its price, or change its retries.
_REFUSED = frozenset({"api_base", "base_url", "api_key", "api_version", "custom_llm_provider", "organization",
                      "headers", "extra_headers", "mock_response", "input_cost_per_token", "output_cost_per_token",
                      "timeout", "num_retries", "fallbacks", "model_list", "mock_timeout"})


def routing_text(messages) -> str:
    """The text the router routes on: the last ``user`` message's content (text parts joined)."""
    for m in reversed(messages if isinstance(messages, list) else []):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, list):
                c = "\n".join(p.get("text", "") for p in c if isinstance(p, dict) and p.get("type") == "text")
            if isinstance(c, str) and c.strip():
                return c
    raise BadRequest(422, "messages: the router routes on the last user message's text, and there is none")


def _number(value, what: str, lo: float | None = None, hi: float | None = None) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise BadRequest(422, f"{what} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(x) or (lo is not None and x < lo) or (hi is not None and x > hi):
        raise BadRequest(422, f"{what} must be a finite number{f' in [{lo:g}, {hi:g}]' if hi is not None else ''}, "
                              f"got {value!r}")
    return x


def _redact(text: str, secrets: list[str]) -> str:
    for s in secrets:
        text = text.replace(s, "***")
    return text


@dataclass
class Call:
    """One upstream call's outcome, as the ``outcomes`` table records it."""

    decision_id: str
    model: str
    status: str = "ok"
    upstream_status: int | None = 200
    served_model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None
    started: float = 0.0
    latency_ms: float | None = None


class Gateway:
    """The chat-completions endpoint's work: decide (via the service's batcher), call, record."""

    def __init__(self, config: GatewayConfig, settings, service, batcher, path=None):
        self.config, self.settings, self.service, self.batcher = config, settings, service, batcher
        self.store = service.store
        # one deployment per model name, called with the file's parameters: directly where it is
        # OpenAI-compatible, else by LiteLLM's SDK (not its Router: ~5 ms a call here for load balancing
        # and cooldowns this gateway does not use; benchmarks/results/gateway_overhead)
        self.upstreams = Upstreams(settings.gateway_client)
        self.params = {m["model_name"]: m["litellm_params"] for m in config.model_list()}
        self.path = path
        self._seen = self._version()

    def _version(self) -> tuple:
        # the service replaces its prices dict when the price sheet changes (RouteService.refresh_prices)
        return file_stamp(self.path), id(self.service.prices)

    def refresh(self) -> None:
        """Read the gateway file again when it or the price sheet changed: new prices and parameters hold
        from the next request. A file that no longer loads, or that adds or removes a model (a restart
        of ``serve`` does that), keeps the old one, logged."""
        if self.path is None:
            return
        self.service.refresh_prices()
        seen = self._version()
        if seen == self._seen:
            return
        self._seen = seen
        config = reload_gateway(self.path, self.config, self.service.pool or self.service.holder.current.models,
                                self.service.prices)
        if config is not None:
            self.config, self.params = config, {m["model_name"]: m["litellm_params"] for m in config.model_list()}

    async def call(self, model: str, rest: dict):
        """The chosen model's answer (:mod:`.upstream`: a dict, or chunk dicts when streamed) with the
        file's parameters (its key from the environment, read at each call, never stored here) and the
        client's body."""
        env = self.config.models[model].key_env  # os.environ/NAME, checked at start (gateway_config)
        key = os.environ.get(env) if env else None
        return await self.upstreams.call(self.params[model], rest, key, self.config.num_retries)

    # -- the request ------------------------------------------------------------------------
    def parse(self, body, headers) -> tuple[list, float | None, float, dict]:
        if not isinstance(body, dict):
            raise BadRequest(422, "body: must be a JSON object (the OpenAI chat-completions schema)")
        if body.get("model") != self.settings.gateway_model:
            raise BadRequest(404, f"model {body.get('model')!r} is not served here: ask for "
                                  f"{self.settings.gateway_model!r}")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest(422, "messages: is required (a non-empty list)")
        own = body.get("causal_router") or {}
        if not isinstance(own, dict) or set(own) - {"lam", "explore"}:
            raise BadRequest(422, 'causal_router: must be {"lam": float, "explore": float}')
        if own.get("lam") is not None:
            lam = _number(own["lam"], "causal_router.lam")
        elif headers.get(LAM_HEADER):
            lam = _number(headers[LAM_HEADER], f"header {LAM_HEADER}")
        elif self.service.budget is not None:
            lam = None  # the budget controller's (serving/budget.py), set when the decision is drawn
        elif self.settings.lam is not None:
            lam = float(self.settings.lam)
        else:
            raise BadRequest(422, f'lam is not set: send causal_router: {{"lam": ...}} in the body (openai: '
                                  f'extra_body), the header {LAM_HEADER}, or set serve.lam in params.yaml')
        explore = self.settings.explore if own.get("explore") is None else _number(own["explore"],
                                                                                  "causal_router.explore", 0, 1)
        rest = {k: v for k, v in body.items() if k not in _OWN}
        refused = sorted(k for k in rest if k in _REFUSED or k.startswith("litellm"))
        if refused:
            raise BadRequest(422, f"body: {', '.join(refused)} cannot be set by a client (the gateway file sets "
                                  f"where and how each model is called)")
        return messages, lam, float(explore), rest

    async def decide(self, text: str, lam: float, explore: float, request_id: str) -> tuple:
        """The policy's decision and an awaitable done once it is in the log (a lone request's commit
        runs while the model is called: nothing leaves before it is done)."""
        if len(text) > self.settings.max_prompt_chars:
            raise BadRequest(413, f"the last user message exceeds the limit of {self.settings.max_prompt_chars} "
                                  f"characters")
        err = None if lam is None else self.service.lam_error(self.service.holder.current, lam)
        if err:
            raise BadRequest(422, err)
        out, committed = await self.batcher.submit(RouteItem([text], lam, explore, request_id), early=True)
        if isinstance(out, BadRequest):
            await committed
            raise out
        return out[0], committed

    def fallback_decision(self, policy: dict, model: str, text: str, explore: float, request_id: str) -> dict:
        """A decision no policy drew: the fallback rule's next model after ``policy``'s failed."""
        from ..data.schema import propensities_json
        from .service import decision_id
        from .store import now

        m = self.service.holder.current
        did = decision_id(time.time_ns(), 0)
        self.store.add_decisions([{
            "decision_id": did, "created_at": now(), "request_id": request_id, "prompt": text, "model": model,
            "propensity": 1.0, "lam": float(policy["lam"]), "explore": explore, "router_name": m.name,
            "router_version": policy["router_version"], "input_tokens": None,
            "propensities": propensities_json([model], [1.0]), "fallback_of": policy["decision_id"]}])
        return {"decision_id": did, "model": model, "propensity": 1.0, "lam": policy["lam"],
                "fallback_of": policy["decision_id"]}

    # -- recording --------------------------------------------------------------------------
    def record(self, call: Call) -> None:
        """The call's outcome; a failed call also gets its feedback (score :data:`FAILED_SCORE`)."""
        cost = self.config.models[call.model].cost(call.input_tokens, call.output_tokens)
        self.store.add_outcome({
            "decision_id": call.decision_id, "source": "gateway", "served_model": call.served_model,
            "status": call.status, "upstream_status": call.upstream_status, "input_tokens": call.input_tokens,
            "output_tokens": call.output_tokens, "cost": cost, "latency_ms": call.latency_ms, "error": call.error})
        if call.status != "ok":
            self.store.add_feedback(call.decision_id, FAILED_SCORE, cost, call.output_tokens)

    def failed(self, call: Call, exc: BaseException) -> Call:
        name = exc.name if isinstance(exc, UpstreamError) else type(exc).__name__
        timeout = isinstance(exc, (asyncio.TimeoutError, TimeoutError)) or "timeout" in name.lower()
        call.status = "timeout" if timeout else "error"
        code = getattr(exc, "status_code", None)
        call.upstream_status = None if timeout or not isinstance(code, int) else code
        call.error = _redact(name + (f" (HTTP {call.upstream_status})" if call.upstream_status
                                                        else ""), self.config.secrets())
        call.latency_ms = (time.perf_counter() - call.started) * 1000
        return call

    @staticmethod
    def usage(call: Call, usage) -> None:
        if isinstance(usage, dict):
            call.input_tokens = usage.get("prompt_tokens")
            call.output_tokens = usage.get("completion_tokens")

    # -- the endpoint -----------------------------------------------------------------------
    async def handle(self, request: Request):
        self.refresh()
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise BadRequest(422, "body: is not valid JSON") from None
        messages, lam, explore, rest = self.parse(body, request.headers)
        text = routing_text(messages)
        rid = request.state.request_id
        decision, committed = await self.decide(text, lam, explore, rid)
        stream = bool(rest.get("stream"))
        client_usage = bool((rest.get("stream_options") or {}).get("include_usage"))
        if stream:
            rest["stream_options"] = {**(rest.get("stream_options") or {}), "include_usage": True}
        chain = [decision["model"], *self.config.fallbacks.get(decision["model"], [])]
        current, failures = decision, []
        for i, model in enumerate(chain):
            if model not in self.config.models:  # a reloaded router with a model the file lacks
                failures.append(f"{model} (not in the gateway file)")
                continue
            if i > 0:
                current = await run_in_threadpool(self.fallback_decision, decision, model, text, explore, rid)
            call = Call(current["decision_id"], model, started=time.perf_counter())
            task = asyncio.ensure_future(self.call(model, rest))
            try:
                await committed  # the decision is in the log before anything is answered or recorded
            except BaseException:
                task.cancel()
                raise
            try:
                resp = await task
            except Exception as exc:  # an upstream error or timeout: the decision's outcome
                await run_in_threadpool(self.record, self.failed(call, exc))
                failures.append(f"{self.config.models[model].upstream}: {call.error}")
                log.warning("decision %s: upstream %s failed: %s", call.decision_id, model, call.error)
                continue
            headers = self.headers(current)
            if stream:
                return StreamingResponse(self.chunks(resp, call, client_usage), media_type="text/event-stream",
                                         headers=headers)
            call.latency_ms = (time.perf_counter() - call.started) * 1000
            call.served_model = resp.get("model")
            self.usage(call, resp.get("usage"))
            await run_in_threadpool(self.record, call)
            resp["model"] = model
            return JSONResponse(resp, headers=headers)
        raise BadRequest(502, "upstream failed: " + "; then ".join(failures)
                         + ("" if len(chain) > 1 else " (no fallbacks configured)"))

    def headers(self, d: dict) -> dict:
        h = {"x-causal-router-decision-id": d["decision_id"], "x-causal-router-model": d["model"],
             "x-causal-router-propensity": repr(float(d["propensity"])), LAM_HEADER: repr(float(d["lam"]))}
        if d.get("fallback_of"):
            h["x-causal-router-fallback-of"] = d["fallback_of"]
        if d.get("budget"):  # serve.budget: controlled, override or capped
            h["x-causal-router-budget"] = d["budget"]
        return h

    async def chunks(self, resp, call: Call, client_usage: bool):
        """The upstream's chunks as server-sent events, ``model`` set; the outcome recorded at the end."""
        try:
            async for data in resp:
                if data.get("usage"):
                    self.usage(call, data["usage"])
                    call.served_model = data.get("model") or call.served_model
                    if not client_usage and not data.get("choices"):
                        continue
                call.served_model = call.served_model or data.get("model")
                data["model"] = call.model
                yield f"data: {json.dumps(data)}\n\n"
            call.latency_ms = (time.perf_counter() - call.started) * 1000
        except Exception as exc:
            self.failed(call, exc)
            log.warning("decision %s: stream from %s broke: %s", call.decision_id, call.model, call.error)
            yield f"data: {json.dumps({'error': {'message': f'upstream {call.model} failed: {call.error}'}})}\n\n"
        finally:
            if call.latency_ms is None:  # the client went away mid-stream
                call.status, call.error = "error", call.error or "client disconnected"
                call.latency_ms = (time.perf_counter() - call.started) * 1000
            # shielded: a client that goes away must not cancel the record
            await asyncio.shield(asyncio.ensure_future(run_in_threadpool(self.record, call)))
        yield "data: [DONE]\n\n"


def gateway_routes(gateway: Gateway) -> APIRouter:
    """``POST /v1/chat/completions`` around ``gateway``."""
    router = APIRouter()

    @router.post("/v1/chat/completions", responses={
        401: {"description": "Missing or wrong bearer token"}, 404: {"description": "Unknown model name"},
        413: {"description": "Too large"}, 422: {"description": "Invalid body, or no lambda"},
        502: {"description": "The upstream (and its fallbacks) failed"}})
    async def chat_completions(request: Request):
        """OpenAI chat completions: routed by the served router, answered by the chosen model."""
        return await gateway.handle(request)

    return router


def recorded_cost(store, decision_id: str, cost: float | None) -> tuple[float | None, int | None]:
    """For ``POST /v1/feedback``: a decision whose call the gateway (or the LiteLLM callback) recorded
    keeps that cost. Returns ``(cost, output_tokens)`` to record (``(cost, None)`` unchanged for other
    decisions). A different cost is refused (409), so is feedback after ingest logged the decision as
    ``feedback_missing`` (409); a failed call's feedback was recorded by the gateway (409 too)."""
    o = store.outcome(decision_id)
    if o is None or o.get("cost") is None:
        return cost, None
    if o.get("ingested") == "no_feedback":
        raise BadRequest(409, f"decision {decision_id!r} waited longer than ingest.reward_wait_s for feedback and "
                              f"was logged as feedback_missing")
    if o["status"] != "ok":
        raise BadRequest(409, f"decision {decision_id!r} failed upstream ({o['status']}): the gateway recorded its "
                              f"outcome with score {FAILED_SCORE:g}")
    if cost is not None and not math.isclose(cost, o["cost"], rel_tol=1e-9, abs_tol=1e-15):
        raise BadRequest(409, f"decision {decision_id!r} was answered through the gateway, which recorded its cost "
                              f"({o['cost']:.6g} USD, from the upstream's usage and the file's prices): send only "
                              f"the score")
    return float(o["cost"]), o.get("output_tokens")


def mount_gateway(app, settings, service, batcher) -> Gateway:
    """Check ``settings.gateway`` (relative: to the project) against the served router and the price
    sheet, and add ``POST /v1/chat/completions`` to ``app``. Raises
    :class:`~.gateway_config.GatewayConfigError` (one line) when the file cannot be served."""
    from pathlib import Path

    from ..settings.env import find_project_root
    from .gateway_config import load_gateway

    path = Path(settings.gateway)
    if not path.is_absolute():
        path = Path(settings.root) if settings.root else (find_project_root() or Path("."))
        path = path / settings.gateway
    config = load_gateway(path, service.pool or service.holder.current.models, service.prices)  # the served pool
    gateway = Gateway(config, settings, service, batcher, path)
    app.include_router(gateway_routes(gateway))
    log.warning("gateway: %s answers model %r with %s", path, settings.gateway_model, sorted(config.models))
    return gateway
