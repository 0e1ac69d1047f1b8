"""serving/upstream.py against a real local OpenAI-compatible server (the stub upstream): which
deployments are called directly, the answer passed through as sent, retries and error names."""

import asyncio

import pytest

from causal_router.serving.upstream import UpstreamError, Upstreams, direct_eligible
from tests.serving.upstreams import USAGE, upstreams  # noqa: F401  (the module-scoped stub servers)

BODY = {"messages": [{"role": "user", "content": "hi"}]}


def params(url, **extra):
    return {"model": "openai/model-a", "api_base": url + "/v1", "api_key": "os.environ/K",
            "input_cost_per_token": 1e-7, "output_cost_per_token": 2e-7, "timeout": 5.0, **extra}


@pytest.fixture
def stub(upstreams):  # noqa: F811
    b, url = upstreams["model-a"]
    b.fail_status, b.stall_s, b.break_after, b.chunk_delay_s, b.calls[:] = None, 0.0, None, 0.0, []
    yield b, url
    b.fail_status = None


def test_only_plain_openai_compatible_deployments_are_called_directly():
    url = "http://127.0.0.1:9"
    assert direct_eligible(params(url))
    assert not direct_eligible(params(url, model="anthropic/claude"))  # another provider: LiteLLM
    assert not direct_eligible(params(url, temperature=0.2))  # call parameters LiteLLM would map
    assert not direct_eligible({k: v for k, v in params(url).items() if k != "api_base"})  # LiteLLM's default base
    assert not Upstreams("litellm").direct(params(url))


def test_a_direct_call_sends_the_upstream_model_name_and_key_and_returns_its_json(stub):
    b, url = stub

    async def go():
        up = Upstreams()
        try:
            one = await up.call(params(url), BODY, "sk-k", 0)
            chunks = [c async for c in await up.call(params(url), {**BODY, "stream": True,
                                                                   "stream_options": {"include_usage": True}},
                                                      "sk-k", 0)]
            return one, chunks
        finally:
            await up.aclose()

    one, chunks = asyncio.run(go())
    assert one["choices"][0]["message"]["content"] == "answer from model-a" and one["object"] == "chat.completion"
    assert (one["usage"]["prompt_tokens"], one["usage"]["completion_tokens"]) == USAGE["model-a"]
    assert b.calls[0]["body"]["model"] == "model-a" and b.calls[0]["authorization"] == "Bearer sk-k"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "answer from model-a" and chunks[-1]["usage"]["completion_tokens"] == USAGE["model-a"][1]


@pytest.mark.parametrize("status, retried, name", [(503, True, "InternalServerError"),
                                                   (429, True, "RateLimitError"),
                                                   (400, False, "BadRequestError")])
def test_retries_follow_openais_rule_and_the_error_keeps_the_status(stub, status, retried, name):
    b, url = stub
    b.fail_status = status

    async def go():
        up = Upstreams()
        try:
            await up.call(params(url), BODY, None, 2)
        finally:
            await up.aclose()

    with pytest.raises(UpstreamError) as err:
        asyncio.run(go())
    assert err.value.status_code == status and err.value.name == name
    assert len(b.calls) == (3 if retried else 1)


def test_a_stall_past_the_timeout_is_a_timeout_and_a_dead_port_a_connection_error(stub):
    b, url = stub
    b.stall_s = 2.0

    async def go(p):
        up = Upstreams()
        try:
            await up.call(p, BODY, None, 0)
        finally:
            await up.aclose()

    with pytest.raises(UpstreamError) as err:
        asyncio.run(go(params(url, timeout=0.3)))
    assert err.value.name == "Timeout" and err.value.status_code is None
    with pytest.raises(UpstreamError) as err:
        asyncio.run(go(params("http://127.0.0.1:9")))
    assert err.value.name == "APIConnectionError" and err.value.status_code is None
