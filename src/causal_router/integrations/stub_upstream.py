"""A stub OpenAI-compatible upstream (``POST /v1/chat/completions``) for the gateway's tests, its
overhead benchmark and the stack's end-to-end check, where the machines have no internet.

It answers with a known text and known ``usage`` (``prompt_tokens``, ``completion_tokens``), streamed
(server-sent events, with a final usage chunk when ``stream_options.include_usage`` is set) or not,
after ``delay_s``; it can be made to fail (``fail_status``: an OpenAI-style error with that status) or
to stall (``stall_s``: wait that long before answering). Every request is counted in ``calls``.

Run one: ``python -m causal_router.integrations.stub_upstream --port 9001 --name m1``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse


@dataclass
class StubBehaviour:
    """What the stub answers (mutable while it runs: tests flip ``fail_status`` or ``stall_s``)."""

    name: str = "stub"
    text: str = "Hello from the stub upstream."
    prompt_tokens: int = 100
    completion_tokens: int = 20
    delay_s: float = 0.0
    fail_status: int | None = None
    stall_s: float = 0.0
    break_after: int | None = None  # a stream breaks (the connection drops) after this many chunks
    chunk_delay_s: float = 0.0  # pause before each streamed chunk
    calls: list = field(default_factory=list)


def _completion(b: StubBehaviour, model: str) -> dict:
    return {"id": "chatcmpl-" + uuid.uuid4().hex[:12], "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": b.text}}],
            "usage": {"prompt_tokens": b.prompt_tokens, "completion_tokens": b.completion_tokens,
                      "total_tokens": b.prompt_tokens + b.completion_tokens}}


class StreamBroken(RuntimeError):
    """Raised inside a streamed answer: the server drops the connection mid-stream."""


async def _paced(b: StubBehaviour, chunks):
    for i, c in enumerate(chunks):
        if b.break_after is not None and i >= b.break_after:
            raise StreamBroken(f"{b.name}: the stream broke after {i} chunks (on purpose)")
        if b.chunk_delay_s:
            await asyncio.sleep(b.chunk_delay_s)
        yield c


def _chunks(b: StubBehaviour, model: str, usage: bool):
    cid, created = "chatcmpl-" + uuid.uuid4().hex[:12], int(time.time())

    def chunk(delta, finish=None, use=None):
        c = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if delta is not None else []}
        if use is not None:
            c["usage"] = use
        return "data: " + json.dumps(c) + "\n\n"

    yield chunk({"role": "assistant", "content": ""})
    words = b.text.split(" ")
    for i, w in enumerate(words):
        yield chunk({"content": w if i == 0 else " " + w})
    yield chunk({}, "stop")
    if usage:
        yield chunk(None, use={"prompt_tokens": b.prompt_tokens, "completion_tokens": b.completion_tokens,
                               "total_tokens": b.prompt_tokens + b.completion_tokens})
    yield "data: [DONE]\n\n"


def stub_app(behaviour: StubBehaviour | None = None):
    """The stub as a FastAPI app; ``app.state.behaviour`` is its :class:`StubBehaviour`."""
    b = behaviour or StubBehaviour()
    app = FastAPI()
    app.state.behaviour = b

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        b.calls.append({"body": body, "authorization": request.headers.get("authorization")})
        if b.stall_s:
            await asyncio.sleep(b.stall_s)
        if b.delay_s:
            await asyncio.sleep(b.delay_s)
        if b.fail_status:
            return JSONResponse({"error": {"message": f"{b.name} failed on purpose", "type": "server_error",
                                           "code": str(b.fail_status)}}, status_code=b.fail_status)
        model = body.get("model") or b.name
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(_paced(b, _chunks(b, model, usage)), media_type="text/event-stream")
        return _completion(b, model)

    return app


def main(argv=None) -> None:
    import argparse

    import uvicorn

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9001)
    p.add_argument("--name", default="stub")
    p.add_argument("--text", default=StubBehaviour.text)
    p.add_argument("--prompt-tokens", type=int, default=StubBehaviour.prompt_tokens)
    p.add_argument("--completion-tokens", type=int, default=StubBehaviour.completion_tokens)
    p.add_argument("--delay-ms", type=float, default=0.0)
    a = p.parse_args(argv)
    b = StubBehaviour(a.name, a.text, a.prompt_tokens, a.completion_tokens, a.delay_ms / 1000.0)
    uvicorn.run(stub_app(b), host=a.host, port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
