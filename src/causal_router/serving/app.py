"""The routing service: FastAPI app, served by uvicorn (``causal-router serve``).

Endpoints
---------
GET  /healthz        200 ``{"status": "ok", "model": NAME, "version": VERSION, "model_uri": URI}``
POST /v1/route       ``{"prompts": [str, ...], "lam": float, "explore": float (optional)}`` ->
                     ``{"decisions": [{"decision_id", "model", "propensity", "router_version", "lam"}]}``
POST /v1/feedback    ``{"decision_id": str, "score": float in [0, 1], "cost": float >= 0 (optional),
                     "output_tokens": int (optional)}`` -> 200; 404 unknown id, 409 second feedback
GET  /docs           OpenAPI documentation

Each decision is drawn from :class:`~causal_router.policy.exploration.ExplorationPolicy` and is in the
decision log (committed) before its response is sent. Errors are JSON ``{"message", "request_id"}``;
details go to the server log, never into the response.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import secrets
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from ..data.schema import propensities_json
from ..policy.exploration import ExplorationPolicy
from .batching import MicroBatcher
from .model import ModelHolder, ServedModel
from .settings import TOKEN_ENV, ServeSettings
from .store import DecisionStore, DuplicateFeedback, UnknownDecision, now

log = logging.getLogger("causal_router.serving")

#: What needs no token when one is set (the issue's rule: every endpoint but /healthz, docs included).
OPEN_PATHS = ("/healthz",)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

Finite = Annotated[float, Field(allow_inf_nan=False)]
# Only documents the scheme in /docs: GuardMiddleware checks the token before any parsing.
bearer = HTTPBearer(auto_error=False, description=f"Required when {TOKEN_ENV} is set.")
Auth = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


class RouteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompts: list[Annotated[str, Field(min_length=1)]] = Field(
        ..., min_length=1, description="Prompts to route (each non-empty).")
    lam: Finite = Field(..., description="Cost preference lambda: utility = score - lam * cost. Must lie in "
                        "the served router's lambda interval (see /healthz).")
    explore: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] | None = Field(
        None, description="Exploration rate in [0, 1] (default: params.yaml serve.explore); 0 = deterministic.")


class Decision(BaseModel):
    decision_id: str
    model: str
    propensity: float = Field(..., description="Probability with which the policy drew this model.")
    router_version: str
    lam: float


class RouteResponse(BaseModel):
    decisions: list[Decision]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision_id: Annotated[str, Field(min_length=1, max_length=64)]
    score: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
    cost: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] | None = Field(
        None, description="USD; when absent, computed from the price sheet and the token counts.")
    output_tokens: Annotated[int, Field(ge=0)] | None = None


class FeedbackResponse(BaseModel):
    decision_id: str
    score: float
    cost: float


class Health(BaseModel):
    status: str
    model: str
    version: str
    model_uri: str
    lam_range: list[float]
    models: list[str]


@dataclass
class RouteItem:
    prompts: list
    lam: float
    explore: float
    request_id: str


class BadRequest(Exception):
    """A request the current model cannot answer (e.g. lam outside its interval after a reload)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def load_encoder(settings: ServeSettings, model: ServedModel):
    """The encoder for ``model``: ``settings.encoder`` (``module:callable``), the model's encoder
    folder, or the default encoder; refuses one whose features the router was not trained on."""
    if settings.encoder:
        module, _, attr = settings.encoder.partition(":")
        enc = getattr(importlib.import_module(module), attr)()
    elif model.encoder_path:
        from ..features.encoder import TransformerEncoder

        enc = TransformerEncoder(model.encoder_path)
    else:
        from ..features.embed import default_encoder

        enc = default_encoder()
    check_encoder(model, enc)
    return enc


def check_encoder(model: ServedModel, enc) -> None:
    from ..features.encoder import features_compatible

    if model.encoder_key and not features_compatible(model.encoder_key, enc.key):
        raise RuntimeError(f"{model.name} version {model.version} was trained on features of encoder "
                           f"{model.encoder_key!r}, not {enc.key!r}")


def decision_id(stamp_ns: int, index: int) -> str:
    """A 32-hex-digit decision id that sorts in the order the decisions were made: the batch's time
    in nanoseconds, the decision's index in the batch, then 48 random bits. The decisions of one
    batch share a timestamp, and the logs order rows by (timestamp, id): with random ids their order,
    and which of them the holdout takes, would change from run to run."""
    return f"{stamp_ns:016x}{index:04x}{uuid.uuid4().hex[:12]}"


class Router:
    """Routes batches of requests with the current model and logs the decisions."""

    def __init__(self, settings: ServeSettings, holder: ModelHolder, store: DecisionStore, encoder,
                 rng: np.random.Generator, prices: dict | None = None):
        self.settings = settings
        self.holder = holder
        self.store = store
        self.encoder = encoder
        self.rng = rng
        self.prices = prices or {}
        self.policy = ExplorationPolicy(settings.explore, settings.floor, settings.temperature,
                                        settings.challenger_share, settings.strategy, settings.posterior_scale)
        self.counts = store.counts_by_model()

    def lam_error(self, model: ServedModel, lam: float) -> str | None:
        lo, hi = model.lam_range
        if lo <= lam <= hi:
            return None
        where = f"[{lo:g}, {hi:g}]" if lo < hi else f"{lo:g} (an endpoint router)"
        return (f"lam must be within the router's lambda interval {where} ({model.name} version "
                f"{model.version}), got {lam:g}")

    def tokens(self, model: ServedModel, prompts) -> np.ndarray | None:
        tpc = model.tokens_per_char
        return None if not tpc else np.array([len(p) * float(tpc) for p in prompts])

    def handle(self, items: list[RouteItem]) -> list:
        """Route a batch (runs in the batcher's thread): one embedding call, one commit."""
        model = self.holder.current
        texts = [p for it in items for p in it.prompts]
        X = np.asarray(self.encoder.encode(texts), dtype=np.float32)
        counts = np.array([self.counts.get(m, 0) for m in model.models], dtype=float)
        created = now()
        stamp = time.time_ns()
        rows, results, start = [], [], 0
        for it in items:
            n = len(it.prompts)
            Xi, start = X[start:start + n], start + n
            err = self.lam_error(model, it.lam)
            if err:
                results.append(BadRequest(422, err))
                continue
            tok = self.tokens(model, it.prompts)
            guide = model.challenger_choice(Xi, it.lam, tok) if it.explore > 0 else None
            post = model.posterior(Xi, it.lam, tok) if it.explore > 0 and self.policy.strategy == "thompson" else None
            P = self.policy.probabilities(model.scores(Xi, it.lam, tok), it.explore, counts, guide, post)
            idx, prop = self.policy.draw(P, self.rng)
            out = []
            for j, (k, p) in enumerate(zip(idx, prop)):
                vector = propensities_json(model.models, P[j])
                did = decision_id(stamp, len(rows))
                row = {"decision_id": did, "created_at": created, "request_id": it.request_id,
                       "prompt": it.prompts[j], "model": model.models[k], "propensity": float(p),
                       "lam": float(it.lam), "explore": float(it.explore), "router_name": model.name,
                       "router_version": model.version,
                       "input_tokens": None if tok is None else float(tok[j]), "propensities": vector}
                rows.append(row)
                out.append({"decision_id": did, "model": row["model"], "propensity": row["propensity"],
                            "router_version": model.version, "lam": row["lam"]})
            results.append(out)
        self.store.add_decisions(rows)  # committed before any response leaves
        for r in rows:
            self.counts[r["model"]] = self.counts.get(r["model"], 0) + 1
        return results

    def cost(self, decision: dict, output_tokens: int | None) -> float:
        """USD cost of a decision from the price sheet and its token counts."""
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


def _message(status: int, message: str, request: Request) -> JSONResponse:
    rid = getattr(request.state, "request_id", None) or uuid.uuid4().hex
    return JSONResponse({"message": message, "request_id": rid}, status_code=status, headers={"x-request-id": rid})


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
    """Request ids, the body size limit (413) and the bearer token (401), before any parsing."""

    def __init__(self, app, max_body_bytes: int, token: str | None):
        self.app = app
        self.max_body = int(max_body_bytes)
        self.token = token.encode() if token else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        rid = headers.get("x-request-id", "")
        rid = rid if _REQUEST_ID.match(rid) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        async def reply(status: int, message: str, extra=()):
            body = JSONResponse({"message": message, "request_id": rid}).body
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"), (b"x-request-id", rid.encode()),
                                    (b"content-length", str(len(body)).encode()), *extra]})
            await send({"type": "http.response.body", "body": body})

        if self.token is not None and scope["path"] not in OPEN_PATHS:
            auth = headers.get("authorization", "")
            scheme, _, given = auth.partition(" ")
            if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), self.token):
                return await reply(401, "missing or wrong bearer token (Authorization: Bearer <token>)",
                                   [(b"www-authenticate", b"Bearer")])
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
            sent = False

            async def replay():
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            receive = replay

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                if not any(k.lower() == b"x-request-id" for k, _ in message["headers"]):
                    message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        return await self.app(scope, receive, send_with_id)


def create_app(settings: ServeSettings | None = None, holder: ModelHolder | None = None,
               store: DecisionStore | None = None, encoder=None) -> FastAPI:
    """The service. ``holder``, ``store`` and ``encoder`` are built from ``settings`` when not given
    (tests inject them)."""
    from ..registry.names import CHALLENGER
    from ..registry.tracking import configure
    from ..settings.prices import load_prices

    settings = settings or ServeSettings.from_params()
    token = os.environ.get(TOKEN_ENV) or None
    if token is None:
        log.warning("%s is not set: the service accepts requests from anyone who can reach it", TOKEN_ENV)
    if holder is None:
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            configure(settings.root)
        holder = ModelHolder(settings.model_uri, settings.poll_seconds,
                             challenger_alias=CHALLENGER if settings.challenger_share > 0 else None)
    if store is None:
        from .store import default_uri

        store = DecisionStore(settings.decisions_uri or default_uri(settings.root))
    if encoder is None:
        encoder = load_encoder(settings, holder.current)
    else:
        check_encoder(holder.current, encoder)
    holder._on_change = lambda m: check_encoder(m, encoder)
    prices = None
    if settings.prices:
        from pathlib import Path

        path = Path(settings.prices)
        path = path if path.is_absolute() else Path(settings.root) / path
        prices = load_prices(path) if path.is_file() else None
        if prices is None:
            log.warning("price sheet %s not found: feedback must carry its cost", path)
    seed = settings.seed
    rng = np.random.default_rng(None if seed is None else [int(seed), *(
        [os.getpid()] if os.environ.get("CAUSAL_ROUTER_SERVE_MULTIWORKER") else [])])
    router = Router(settings, holder, store, encoder, rng, prices)
    batcher = MicroBatcher(router.handle, settings.batch_window_ms / 1000.0, settings.max_batch,
                           size=lambda it: len(it.prompts))

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        holder.start()
        log.warning("serving %s version %s (%s); decisions -> %r", holder.current.name, holder.current.version,
                    settings.model_uri, store)
        try:
            yield
        finally:
            holder.stop()
            await batcher.stop()

    app = FastAPI(title="causal-router", version=_version(), lifespan=lifespan,
                  description="Routes prompts to LLMs with a router learned from observational logs, explores "
                              "so that the next round can learn too, and records every decision and its "
                              "feedback.")
    app.state.router, app.state.batcher, app.state.store, app.state.holder = router, batcher, store, holder

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return _message(422, _validation_message(exc), request)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        return _message(exc.status_code, str(exc.detail), request)

    @app.exception_handler(BadRequest)
    async def _bad(request: Request, exc: BadRequest):
        return _message(exc.status, exc.message, request)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        rid = getattr(request.state, "request_id", "?")
        log.error("request %s failed", rid, exc_info=exc)
        return _message(500, f"internal error; the server log has the details under request id {rid}", request)

    @app.get("/healthz", response_model=Health)
    def healthz():
        m = holder.current
        return Health(status="ok", model=m.name, version=m.version, model_uri=settings.model_uri,
                      lam_range=list(m.lam_range), models=list(m.models))

    @app.post("/v1/route", response_model=RouteResponse, responses={
        401: {"description": "Missing or wrong bearer token"}, 413: {"description": "Too large"},
        422: {"description": "Invalid body, or lam outside the router's interval"}})
    async def route(body: RouteRequest, request: Request,
                    _auth: Auth):
        """Route each prompt: the model drawn from the exploring policy and its propensity."""
        if len(body.prompts) > settings.max_prompts:
            raise BadRequest(413, f"{len(body.prompts)} prompts exceed the limit of {settings.max_prompts} per request")
        long = [i for i, p in enumerate(body.prompts) if len(p) > settings.max_prompt_chars]
        if long:
            raise BadRequest(413, f"prompt(s) {long[:5]} exceed the limit of {settings.max_prompt_chars} characters")
        err = router.lam_error(holder.current, body.lam)
        if err:
            raise BadRequest(422, err)
        explore = settings.explore if body.explore is None else body.explore
        item = RouteItem(list(body.prompts), float(body.lam), float(explore), request.state.request_id)
        out = await batcher.submit(item)
        if isinstance(out, BadRequest):
            raise out
        return {"decisions": out}

    @app.post("/v1/feedback", response_model=FeedbackResponse, responses={
        401: {"description": "Missing or wrong bearer token"}, 404: {"description": "Unknown decision_id"},
        409: {"description": "This decision already has feedback"}, 422: {"description": "Invalid body"}})
    def feedback(body: FeedbackRequest, _auth: Auth):
        """Record the outcome of one decision (once)."""
        try:
            row = store.add_feedback(body.decision_id, body.score, body.cost, body.output_tokens, router.cost)
        except UnknownDecision:
            raise BadRequest(404, f"unknown decision_id {body.decision_id!r}") from None
        except DuplicateFeedback:
            raise BadRequest(409, f"decision {body.decision_id!r} already has feedback") from None
        except ValueError as err:
            raise BadRequest(422, str(err)) from None
        return FeedbackResponse(decision_id=row["decision_id"], score=row["score"], cost=row["cost"])

    app.add_middleware(GuardMiddleware, max_body_bytes=settings.max_body_bytes, token=token)
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory for ``serve --workers N``: settings from ``$CAUSAL_ROUTER_SERVE_SETTINGS``."""
    from .settings import SETTINGS_ENV

    text = os.environ.get(SETTINGS_ENV)
    return create_app(ServeSettings.from_env(text) if text else None)


def serve(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Run the service under uvicorn (blocks)."""
    import uvicorn

    if workers > 1:
        from .settings import SETTINGS_ENV

        os.environ[SETTINGS_ENV] = settings.to_env()
        os.environ["CAUSAL_ROUTER_SERVE_MULTIWORKER"] = "1"
        uvicorn.run("causal_router.serving.app:app_from_env", factory=True, host=host, port=port,
                    workers=workers, log_level="info")
    else:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


def _version() -> str:
    from .. import __version__

    return __version__

