"""The routing service over HTTP: FastAPI app, served by uvicorn (``causal-router serve``).

Endpoints
---------
GET  /healthz        200 ``{"status": "ok", "model": NAME, "version": VERSION, "model_uri": URI, "encoder": KEY}``;
                     503 when the decision log cannot be written (a heartbeat write), was deleted or replaced
POST /v1/route       ``{"prompts": [str, ...], "lam": float, "explore": float (optional)}`` ->
                     ``{"decisions": [{"decision_id", "model", "propensity", "router_version", "lam"}]}``
POST /v1/feedback    ``{"decision_id": str, "score": float in [0, 1], "cost": float >= 0 (optional),
                     "output_tokens": int (optional)}`` -> 200; 404 unknown id, 409 second feedback;
                     a decision the gateway answered keeps its recorded cost (409 for another one)
GET  /v1/budget      with ``serve.budget``: target, spend, current lambda, decisions, hard cap (404 without)
POST /v1/chat/completions   with ``serve.gateway``: the OpenAI-compatible gateway (:mod:`.gateway`)
GET  /docs, /redoc, /openapi.json   OpenAPI documentation (``serve.docs``: open, token or off)

Auth: when ``$CAUSAL_ROUTER_API_TOKEN`` is set, every endpoint needs ``Authorization: Bearer <token>``
but ``/healthz`` and, with ``serve.docs: open`` (the default), the documentation, which holds the API's
shape and no data. ``serve.docs: token`` puts the documentation behind the token too; ``off`` serves none.

The routing itself (micro-batches, exploration draws, the decision log) is
:class:`~causal_router.serving.service.RouteService`. Each decision is in the decision log (committed)
before its response is sent. Errors are JSON ``{"message", "request_id"}``; details go to the server log,
never into the response.

Bad data fails its own request only: NUL and unpaired surrogates in any text (prompts, ``decision_id``)
are a 422 on both log back-ends (other control characters are stored as they are); booleans are refused
where numbers are expected; ``cost`` and ``output_tokens`` above the plausibility limits
(:mod:`causal_router.validation.plausibility`) are a 422. A decision log that cannot be written is a 503
with ``Retry-After``. Two ``Authorization`` headers are a 400. Timeouts, the bound on requests in flight
and fair queuing between clients: :mod:`causal_router.serving.limits`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import secrets
import uuid
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from .batching import MicroBatcher
from .gateway import mount_gateway, recorded_cost
from .limits import LimitsMiddleware, client_of, split_prompts, uvicorn_config
from .logfile import LogBusy
from .messages import (
    BudgetReport,
    Decision,
    FeedbackRequest,
    FeedbackResponse,
    Health,
    RouteRequest,
    RouteResponse,
)
from .model import ModelHolder
from .service import BadRequest, RouteItem, build_service
from .settings import SETTINGS_ENV, TOKEN_ENV, ServeSettings
from .store import DecisionStore, DuplicateFeedback, StoreUnavailable, UnknownDecision

log = logging.getLogger("causal_router.serving")

#: What never needs the token (the service's liveness).
OPEN_PATHS = ("/healthz",)
#: The documentation (``serve.docs``): the API's shape, no data.
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")
#: uvicorn's factory for ``serve --workers N`` (each worker builds its own app).
FACTORY = "causal_router.serving.api:app_from_env"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")



bearer = HTTPBearer(auto_error=False, description=f"Required when {TOKEN_ENV} is set.")
Auth = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _error(status: int, message: str, rid: str, headers: dict | None = None) -> JSONResponse:
    """The one error body every refusal has: ``{"message", "request_id"}``."""
    return JSONResponse({"message": message, "request_id": rid}, status_code=status,
                        headers={"x-request-id": rid, **(headers or {})})


def _message(status: int, message: str, request: Request) -> JSONResponse:
    return _error(status, message, getattr(request.state, "request_id", None) or uuid.uuid4().hex)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors():
        loc = [str(x) for x in e.get("loc", ()) if x != "body"]
        where = ".".join(loc) or "body"
        msg = e.get("msg", "invalid")
        if e.get("type") == "missing":
            msg = "is required"
        elif e.get("type") == "json_invalid":
            where, msg = "body", "is not valid JSON"
        elif e.get("type") == "finite_number":
            msg = "must be a finite number (not NaN or infinity)"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts) or "invalid request"


class GuardMiddleware:
    """Request ids, the body size limit (413) and the bearer token (401, but on ``open_paths``), before any
    parsing."""

    def __init__(self, app, max_body_bytes: int, token: str | None, open_paths=OPEN_PATHS):
        self.app = app
        self.max_body = int(max_body_bytes)
        self.token = token.encode() if token else None
        self.open_paths = tuple(open_paths)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        rid = headers.get("x-request-id", "")
        rid = rid if _REQUEST_ID.match(rid) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        async def reply(status: int, message: str, headers: dict | None = None):
            await _error(status, message, rid, headers)(scope, receive, send)

        if sum(k.lower() == b"authorization" for k, _ in scope.get("headers", [])) > 1:
            return await reply(400, "more than one Authorization header")
        if self.token is not None and scope["path"] not in self.open_paths:
            auth = headers.get("authorization", "")
            scheme, _, given = auth.partition(" ")
            if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), self.token):
                return await reply(401, "missing or wrong bearer token (Authorization: Bearer <token>)",
                                   {"www-authenticate": "Bearer"})
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return await reply(413, f"request body of {length} bytes exceeds the limit of {self.max_body} bytes")
        if scope["method"] in ("POST", "PUT", "PATCH"):
            # read the body here (bounded) so that a chunked upload cannot exceed the limit either
            chunks, size, more = [], 0, True
            while more:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    return
                chunk = msg.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    return await reply(413, f"request body exceeds the limit of {self.max_body} bytes")
                chunks.append(chunk)
                more = msg.get("more_body", False)
            body = b"".join(chunks)
            sent, downstream = False, receive  # replay() must not call itself (a streamed response listens on)

            async def replay():
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await downstream()

            receive = replay

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                if not any(k.lower() == b"x-request-id" for k, _ in message["headers"]):
                    message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        return await self.app(scope, receive, send_with_id)


DECISION_FIELDS = tuple(Decision.model_fields)
#: /v1/route's body and security in the OpenAPI document (the endpoint parses its body itself: route_body)
ROUTE_DOC = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": RouteRequest.model_json_schema()}}}, "security": [{"HTTPBearer": []}]}


def route_body(raw: bytes, content_type: str | None) -> RouteRequest:
    """``POST /v1/route``'s body, validated (pydantic's JSON parser, in one pass); a bad one raises
    :class:`RequestValidationError` with FastAPI's error locations (a 422 with the same message)."""
    from pydantic import ValidationError

    media = (content_type or "application/json").split(";", 1)[0].strip().lower()
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise RequestValidationError([{"type": "model_attributes_type", "loc": ("body",),
                                       "msg": "Input should be a JSON object (content-type application/json)"}])
    try:
        return RouteRequest.model_validate_json(raw)
    except ValidationError as err:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in err.errors()]) from None


def create_app(settings: ServeSettings | None = None, holder: ModelHolder | None = None,
               store: DecisionStore | None = None, encoder=None) -> FastAPI:
    """The service. ``holder``, ``store`` and ``encoder`` are built from ``settings`` when not given
    (tests inject them; see :func:`~causal_router.serving.service.build_service`)."""
    settings = settings or ServeSettings.from_params()
    token = os.environ.get(TOKEN_ENV) or None
    if token is None:
        log.warning("%s is not set: the service accepts requests from anyone who can reach it", TOKEN_ENV)
    service = build_service(settings, holder, store, encoder)
    holder, store = service.holder, service.store
    # a batch's commit (service.commit) overlaps the next batch's work (service.prepare)
    batcher = MicroBatcher(service.prepare, settings.batch_window_ms / 1000.0, settings.max_batch,
                           size=lambda it: len(it.prompts), cost=lambda it: sum(len(p) for p in it.prompts),
                           max_cost=settings.max_batch_chars, finish=service.commit, busy=LogBusy,
                           peek=lambda prepared: prepared[1])
    limits = service.limits

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        holder.start()
        # what startup loaded (model, encoder, libraries: ~250,000 objects) never needs collecting: out of the
        # collector's sight, a full collection (~200 ms here) no longer stalls requests (docs/deploy.md)
        gc.freeze()
        log.warning("serving %s version %s (%s); decisions -> %r", holder.current.name, holder.current.version,
                    settings.model_uri, store)
        try:
            yield
        finally:
            holder.stop()
            await batcher.stop()
            if getattr(app.state, "gateway", None) is not None:
                await app.state.gateway.upstreams.aclose()

    docs = settings.docs != "off"
    app = FastAPI(title="causal-router", version=_version(), lifespan=lifespan,
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None,
                  openapi_url="/openapi.json" if docs else None,
                  description="Routes prompts to LLMs with a router learned from observational logs, explores "
                              "so that the next round can learn too, and records every decision and its "
                              "feedback.")
    app.state.service, app.state.batcher, app.state.store, app.state.holder = service, batcher, store, holder
    app.state.settings = settings

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return _message(422, _validation_message(exc), request)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        return _message(exc.status_code, str(exc.detail), request)

    @app.exception_handler(BadRequest)
    async def _bad(request: Request, exc: BadRequest):
        return _message(exc.status, exc.message, request)

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(request: Request, exc: StoreUnavailable):
        log.error("decision log unavailable: %s", exc)
        response = _message(503, f"the decision log cannot be written: {exc}", request)
        response.headers["retry-after"] = str(settings.retry_after_s)
        return response

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        rid = getattr(request.state, "request_id", "?")
        log.error("request %s failed", rid, exc_info=exc)
        return _message(500, f"internal error; the server log has the details under request id {rid}", request)

    @app.get("/healthz", response_model=Health, responses={503: {"description": "The decision log cannot be "
                                                                                "written"}})
    def healthz():
        store.check()  # StoreUnavailable -> 503
        m = holder.current
        return Health(status="ok", model=m.name, version=m.version, model_uri=settings.model_uri,
                      lam_range=list(m.lam_range), models=list(m.models), encoder=str(service.encoder.key))

    @app.post("/v1/route", response_model=RouteResponse, openapi_extra=ROUTE_DOC, responses={
        401: {"description": "Missing or wrong bearer token"}, 413: {"description": "Too large"},
        422: {"description": "Invalid body, or lam outside the router's interval"}})
    async def route(request: Request):
        """Route each prompt: the model drawn from the exploring policy and its propensity. With a budget
        (serve.budget) the headers ``x-causal-router-budget`` (controlled, override or capped) and
        ``x-causal-router-lam`` say how the lambda was set."""
        # the body is parsed and the answer written here, not by FastAPI (its dependency solving, body
        # parsing and response-model validation took about half of a request's CPU with the static encoder)
        body = route_body(await request.body(), request.headers.get("content-type"))
        if len(body.prompts) > settings.max_prompts:
            raise BadRequest(413, f"{len(body.prompts)} prompts exceed the limit of {settings.max_prompts} per request")
        long = [i for i, p in enumerate(body.prompts) if len(p) > settings.max_prompt_chars]
        if long:
            raise BadRequest(413, f"prompt(s) {long[:5]} exceed the limit of {settings.max_prompt_chars} characters")
        if body.lam is None and service.budget is None:
            raise BadRequest(422, "lam: is required (or serve with a budget: serve.budget, serve --budget)")
        err = None if body.lam is None else service.lam_error(holder.current, body.lam)
        if err:
            raise BadRequest(422, err)
        explore = settings.explore if body.explore is None else body.explore
        client = client_of(request.scope, settings.client_key)
        parts = split_prompts(list(body.prompts), settings.max_batch, settings.max_batch_chars)
        items = [RouteItem(part, body.lam, float(explore), request.state.request_id) for part in parts]
        if len(items) == 1:  # the usual request: no gather (a task per part)
            outs = [await batcher.submit(items[0], client)]
        else:
            outs = await asyncio.gather(*(batcher.submit(item, client) for item in items))
        for out in outs:
            if isinstance(out, BadRequest):
                raise out
        # the response model's fields (what FastAPI's response_model validation kept)
        response = JSONResponse({"decisions": [{k: d[k] for k in DECISION_FIELDS} for out in outs for d in out]})
        if items[0].budget:  # the controller's lambda (each decision records the one it was served at)
            response.headers.update({"x-causal-router-budget": items[0].budget,
                                     "x-causal-router-lam": repr(items[0].lam)})
        return response

    @app.get("/v1/budget", response_model=BudgetReport, responses={
        401: {"description": "Missing or wrong bearer token"}, 404: {"description": "No budget is set"}})
    def budget(_auth: Auth):
        """The budget: target, spend over the controller's window and since start, the current lambda, the
        number of decisions, the hard cap (serving/budget.py has the controller's rule)."""
        if service.budget is None:
            raise BadRequest(404, "no budget is set: serve with serve.budget (params.yaml) or serve --budget")
        return service.budget.report()

    @app.post("/v1/feedback", response_model=FeedbackResponse, responses={
        401: {"description": "Missing or wrong bearer token"}, 404: {"description": "Unknown decision_id"},
        409: {"description": "This decision already has feedback"}, 422: {"description": "Invalid body"}})
    def feedback(body: FeedbackRequest, _auth: Auth):
        """Record the outcome of one decision (once)."""
        why = limits.cost_error(body.cost) or limits.tokens_error("output_tokens", body.output_tokens)
        if why:
            raise BadRequest(422, why)
        cost, tokens = recorded_cost(store, body.decision_id, body.cost)  # a gateway decision's own cost
        try:
            row = store.add_feedback(body.decision_id, body.score, cost,
                                     body.output_tokens if tokens is None else tokens, service.priced)
        except UnknownDecision:
            raise BadRequest(404, f"unknown decision_id {body.decision_id!r}") from None
        except DuplicateFeedback:
            raise BadRequest(409, f"decision {body.decision_id!r} already has feedback") from None
        except ValueError as err:
            raise BadRequest(422, str(err)) from None
        return FeedbackResponse(decision_id=row["decision_id"], score=row["score"], cost=row["cost"])

    if settings.gateway:  # POST /v1/chat/completions
        app.state.gateway = mount_gateway(app, settings, service, batcher)
    open_paths = OPEN_PATHS + (DOCS_PATHS if settings.docs == "open" else ())
    app.add_middleware(GuardMiddleware, max_body_bytes=settings.max_body_bytes, token=token, open_paths=open_paths)
    app.add_middleware(LimitsMiddleware, max_concurrent=settings.max_concurrent, body_timeout_s=settings.body_timeout_s,
                       request_timeout_s=settings.request_timeout_s, retry_after_s=settings.retry_after_s)
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory for ``serve --workers N`` (:data:`FACTORY`): settings from ``$CAUSAL_ROUTER_SERVE_SETTINGS``."""
    text = os.environ.get(SETTINGS_ENV)
    return create_app(ServeSettings.from_env(text) if text else None)


def serve(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Run the service under uvicorn (blocks), with the guarded protocol (header timeout) of
    :func:`~causal_router.serving.limits.uvicorn_config`."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    if workers > 1:
        os.environ[SETTINGS_ENV] = settings.to_env()
        os.environ["CAUSAL_ROUTER_SERVE_MULTIWORKER"] = "1"
        config = uvicorn_config(FACTORY, settings, host, port, workers=workers, factory=True, log_level="info")
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        uvicorn.Server(uvicorn_config(create_app(settings), settings, host, port, log_level="info")).run()


def _version() -> str:
    from .. import __version__

    return __version__
