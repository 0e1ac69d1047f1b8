"""The service under hostile load: timeouts, a bound on requests in flight, fair batching inputs.

- **Header timeout** (slowloris): :func:`http_protocol`, uvicorn's httptools protocol (h11's where httptools
  is not installed) with a timer from a
  connection's first byte (or its opening) until a request's headers are complete; past
  ``serve.header_timeout_s`` the connection is closed. uvicorn itself only times idle keep-alive
  connections (``serve.keepalive_timeout_s``) and never a request that is still arriving.
- **Body timeout**: :class:`LimitsMiddleware` gives the body ``serve.body_timeout_s`` in all; past it,
  408 and the connection is closed.
- **Total timeout**: a request not answered within ``serve.request_timeout_s`` gets 503 with
  ``Retry-After`` (what it did so far stays done: a decision may be logged without being acknowledged).
- **Concurrency**: at most ``serve.max_concurrent`` requests in flight (``/healthz`` aside); beyond, 503
  with ``Retry-After: serve.retry_after_s`` at once.
- **One write per response**: the same protocol gathers what one step of the event loop writes
  on a connection (a response's status line and headers, then its body: uvicorn writes them apart, two
  system calls, each a pass through the kernel's loopback TCP path, ~0.4 ms on the benchmark machine)
  and sends it in one write at the start of the next step. A streamed response's chunks leave as they
  come, one step later.
- **Fairness**: :func:`client_of` names the client (its address, or a header a trusted proxy sets) for
  the micro-batcher's per-client queues (:mod:`.batching`), and :func:`split_prompts` cuts a large
  request into parts of at most ``serve.max_batch`` prompts and ``serve.max_batch_chars`` characters
  that are batched in turn with other clients' requests.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover
    HttpToolsProtocol = None

__all__ = ["GuardedH11Protocol", "LimitsMiddleware", "http_protocol", "client_of", "split_prompts", "uvicorn_config"]

HEADER_TIMEOUT_ATTR = "causal_router_header_timeout"


class _OneWrite:
    """A transport whose writes of one event-loop step leave together, in one write (one system call):
    the first write of a step schedules the flush for the next step (``call_soon``); ``close`` flushes
    first. Everything else is the transport's."""

    def __init__(self, transport, loop):
        self._transport, self._loop, self._held = transport, loop, []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data)

    def writelines(self, chunks) -> None:
        for data in chunks:
            self.write(data)

    def flush(self) -> None:
        if self._held:
            data, self._held = b"".join(self._held), []
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name):
        return getattr(self._transport, name)


class _HeaderGuard:
    """The header timeout and the one write per step, for either of uvicorn's HTTP/1.1 protocols: the
    timer runs from a connection's opening, and from a kept-alive connection's next request's first byte,
    until that request's headers are complete (:meth:`_headers_done`)."""

    _header_timer = None

    def _arm(self) -> None:
        timeout = getattr(self.config, HEADER_TIMEOUT_ATTR, None)
        if timeout and self._header_timer is None:
            self._header_timer = self.loop.call_later(timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_made(self, transport) -> None:
        super().connection_made(_OneWrite(transport, self.loop))
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # idle now: uvicorn's keep-alive timeout takes over

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self._headers_done() and not self.transport.is_closing():
            self.logger.info("closing a connection whose request headers took over %ss",
                             getattr(self.config, HEADER_TIMEOUT_ATTR))
            self.transport.close()


class GuardedH11Protocol(_HeaderGuard, H11Protocol):
    """uvicorn's pure-Python h11 protocol, guarded (:class:`_HeaderGuard`): the fallback where httptools
    is not installed."""

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self._arm()  # a new request starts arriving (a kept-alive connection's timer was disarmed)
        super().data_received(data)
        if self._headers_done():
            self._disarm()

    def _headers_done(self) -> bool:
        return self.conn.their_state is not h11.IDLE


if HttpToolsProtocol is not None:
    class GuardedHttpToolsProtocol(_HeaderGuard, HttpToolsProtocol):
        """uvicorn's httptools protocol (llhttp, in C), guarded (:class:`_HeaderGuard`)."""

        _in_headers = True  # from the connection's opening until its first request's headers

        def on_message_begin(self) -> None:
            self._in_headers = True
            self._arm()
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._in_headers = False
            self._disarm()
            super().on_headers_complete()

        def _headers_done(self) -> bool:
            return not self._in_headers
else:  # pragma: no cover - httptools is a dependency; h11 is uvicorn's own fallback
    GuardedHttpToolsProtocol = None


def http_protocol():
    """The guarded protocol ``serve`` runs: httptools' where it is installed (the parser in C: about a
    third of a decision's server time went to h11 under load), else h11's."""
    return GuardedHttpToolsProtocol or GuardedH11Protocol


def uvicorn_config(app, settings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, **kwargs):
    """The uvicorn configuration of ``serve``: the guarded protocol and the keep-alive timeout."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, workers=workers, http=http_protocol(),
                            timeout_keep_alive=max(1, round(settings.keepalive_timeout_s)), **kwargs)
    setattr(config, HEADER_TIMEOUT_ATTR, float(settings.header_timeout_s))
    return config


class _BodyTimeout(Exception):
    pass


class LimitsMiddleware:
    """Requests in flight, the body timeout and the total timeout (see the module docstring)."""

    def __init__(self, app, max_concurrent: int, body_timeout_s: float, request_timeout_s: float,
                 retry_after_s: int = 1, exempt=("/healthz",)):
        self.app = app
        self.max_concurrent = int(max_concurrent)
        self.body_timeout = float(body_timeout_s)
        self.request_timeout = float(request_timeout_s)
        self.retry_after = str(int(retry_after_s)).encode()
        self.exempt = tuple(exempt)
        self.in_flight = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        counted = scope["path"] not in self.exempt
        started = False

        async def reply(status: int, message: str, close: bool = False):
            body = json.dumps({"message": message, "request_id": uuid.uuid4().hex}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            if status == 503:
                headers.append((b"retry-after", self.retry_after))
            if close:
                headers.append((b"connection", b"close"))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        if counted and self.in_flight >= self.max_concurrent:
            return await reply(503, f"the service is at its limit of {self.max_concurrent} requests in flight: "
                               "retry later")
        loop = asyncio.get_running_loop()
        body_deadline = loop.time() + self.body_timeout

        async def timed_receive():
            left = body_deadline - loop.time()
            try:  # asyncio.timeout, not wait_for: no extra task per receive (a cost at 1,000 requests/s)
                async with asyncio.timeout(max(left, 0.001)):
                    return await receive()
            except TimeoutError:
                if started:
                    return {"type": "http.disconnect"}
                raise _BodyTimeout from None

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        self.in_flight += counted
        try:
            async with asyncio.timeout(self.request_timeout):  # in this task: no extra task per request
                await self.app(scope, timed_receive, tracked_send)
        except _BodyTimeout:
            if not started:
                await reply(408, f"the request body took longer than {self.body_timeout:g}s", close=True)
        except TimeoutError:
            if not started:
                await reply(503, f"the request took longer than {self.request_timeout:g}s: retry later")
        finally:
            self.in_flight -= counted


def client_of(scope: dict, key: str = "peer") -> str:
    """The client's name for fair queuing: ``peer`` (its address) or the first value of header ``key``."""
    if key != "peer":
        want = key.lower().encode("latin-1")
        for k, v in scope.get("headers", []):
            if k.lower() == want:
                return v.decode("latin-1").split(",")[0].strip()
    client = scope.get("client")
    return client[0] if client else "?"


def split_prompts(prompts: list, max_prompts: int, max_chars: int) -> list[list]:
    """Consecutive parts of ``prompts``, each at most ``max_prompts`` long and ``max_chars`` characters
    (a single longer prompt is a part of its own)."""
    parts, cur, chars = [], [], 0
    for p in prompts:
        if cur and (len(cur) >= max_prompts or chars + len(p) > max_chars):
            parts.append(cur)
            cur, chars = [], 0
        cur.append(p)
        chars += len(p)
    if cur:
        parts.append(cur)
    return parts
