"""LiteLLM's own Router with causal-router's routing plugin and callback, against local stub upstreams:
in process (RouteService) and over HTTP (causal-router serve's /v1/route)."""

import asyncio
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx  # noqa: E402
import litellm  # noqa: E402
import pytest  # noqa: E402

from causal_router.integrations.litellm import DECISION_KEY, CausalRouterLogger, CausalRouterPlugin  # noqa: E402
from causal_router.serving.store import DecisionStore  # noqa: E402
from tests.serving import upstreams as stub_upstreams  # noqa: E402
from tests.serving.conftest import LiveServer  # noqa: E402
from tests.serving.tiny import MODELS, TinyEncoder  # noqa: E402
from tests.serving.upstreams import PRICES, USAGE  # noqa: E402

upstreams = stub_upstreams.upstreams  # the stub upstreams fixture (module scope)


@pytest.fixture(autouse=True)
def fresh_callbacks():
    """LiteLLM keeps registered callbacks in module globals beyond ``litellm.callbacks``: reset them."""
    litellm.logging_callback_manager._reset_all_callbacks()
    yield
    litellm.logging_callback_manager._reset_all_callbacks()


def model_list(upstreams):
    """One model group, ``causal-router``: a deployment per router model (STACK.md's checked recipe)."""
    return [{"model_name": "causal-router", "litellm_params": {
        "model": f"openai/{m}", "api_base": upstreams[m][1] + "/v1", "api_key": "unused",
        "input_cost_per_token": PRICES[m][0], "output_cost_per_token": PRICES[m][1]}} for m in MODELS]


def expected_cost(m):
    return USAGE[m][0] * PRICES[m][0] + USAGE[m][1] * PRICES[m][1]


async def _calls(router, n, logger=None, **kw):
    out = []
    for i in range(n):
        out.append(await router.acompletion(model="causal-router", messages=[{"role": "user", "content": f"q {i}"}],
                                            **kw))
    for _ in range(1200):  # LiteLLM's success callbacks run as tasks after the response is returned
        if logger is None or len(logger.recorded) >= n:  # (up to 60 s: a loaded 2-core machine is slow)
            break
        await asyncio.sleep(0.05)
    return out


def _check(store, logger, responses, upstreams):
    decisions = store.frame("decisions").set_index("decision_id")
    assert len(decisions) == len(responses) == len(logger.recorded)
    outcomes = store.frame("outcomes").set_index("decision_id")
    assert set(outcomes.index) == set(decisions.index)
    for did, d in decisions.iterrows():
        o = outcomes.loc[did]
        assert o["source"] == "litellm" and o["status"] == "ok" and o["latency_ms"] > 0
        assert (o["input_tokens"], o["output_tokens"]) == USAGE[d["model"]]
        assert o["cost"] == pytest.approx(expected_cost(d["model"]))  # LiteLLM's response_cost
    served = {r.choices[0].message.content.removeprefix("answer from ") for r in responses}
    assert served == set(decisions["model"])  # each call went to the drawn model's deployment
    assert len(served) > 1


def test_router_routes_through_the_plugin_in_process_and_the_callback_fills_the_log(registry, settings, upstreams):
    from causal_router.serving.service import build_service

    service = build_service(settings, encoder=TinyEncoder())
    logger = CausalRouterLogger(service.store)
    litellm.callbacks = [logger]
    router = litellm.Router(model_list=model_list(upstreams), plugins=[CausalRouterPlugin(service, lam=50.0)])
    responses = asyncio.run(_calls(router, 10, logger, metadata={"causal_router": {"explore": 0.6}}))
    _check(service.store, logger, responses, upstreams)


def test_concurrent_calls_sharing_one_metadata_dict_each_record_their_own_decision(registry, settings, upstreams):
    """LiteLLM stamps routing signals on the caller's metadata dict in place: with one dict shared by
    concurrent calls, every callback read the last call's decision id (1 outcome of 10 recorded)."""
    from causal_router.serving.service import build_service

    service = build_service(settings, encoder=TinyEncoder())
    logger = CausalRouterLogger(service.store)
    litellm.callbacks = [logger]
    router = litellm.Router(model_list=model_list(upstreams), plugins=[CausalRouterPlugin(service, lam=50.0)])
    shared = {"causal_router": {"explore": 0.6}}

    async def calls():
        out = await asyncio.gather(*[router.acompletion(
            model="causal-router", messages=[{"role": "user", "content": f"p {i % 4}"}], metadata=shared)
            for i in range(10)])  # repeated texts too: equal texts to one deployment are exchangeable
        for _ in range(1200):
            if len(logger.recorded) >= 10:
                break
            await asyncio.sleep(0.05)
        return out
    _check(service.store, logger, asyncio.run(calls()), upstreams)


def test_plugin_over_http_and_feedback_keeps_the_callbacks_cost(registry, settings, upstreams, tmp_path):
    from causal_router.serving.api import create_app

    with LiveServer(create_app(settings, encoder=TinyEncoder())) as srv:
        store = DecisionStore(settings.decisions_uri)
        logger = CausalRouterLogger(store)
        litellm.callbacks = [logger]
        router = litellm.Router(model_list=model_list(upstreams), plugins=[CausalRouterPlugin(url=srv.url)])
        responses = asyncio.run(_calls(router, 8, logger, metadata={"causal_router": {"lam": 50.0, "explore": 0.6}}))
        _check(store, logger, responses, upstreams)
        did, model = store.frame("decisions").iloc[0][["decision_id", "model"]]
        r = httpx.post(srv.url + "/v1/feedback", json={"decision_id": did, "score": 0.7})
        assert r.status_code == 200 and r.json()["cost"] == pytest.approx(expected_cost(model))


def test_plugin_without_lambda_says_how(registry, settings, upstreams):
    from causal_router.serving.service import build_service

    service = build_service(settings, encoder=TinyEncoder())
    router = litellm.Router(model_list=model_list(upstreams), plugins=[CausalRouterPlugin(service)])
    with pytest.raises(Exception, match="lam is not set"):
        asyncio.run(_calls(router, 1))
    assert DECISION_KEY == "causal_router_decision_id"


def test_a_failed_call_is_recorded_by_the_callback_with_the_failed_score(registry, settings, upstreams):
    from causal_router.serving.service import build_service

    service = build_service(settings, encoder=TinyEncoder())
    logger = CausalRouterLogger(service.store)
    litellm.callbacks = [logger]
    router = litellm.Router(model_list=model_list(upstreams), num_retries=0,
                            plugins=[CausalRouterPlugin(service, lam=50.0)])
    for b, _ in upstreams.values():
        b.fail_status = 500
    try:
        with pytest.raises(litellm.exceptions.InternalServerError):  # LiteLLM's own error reaches the caller
            asyncio.run(_calls(router, 1))

        async def wait():
            for _ in range(1200):
                if logger.recorded:
                    return
                await asyncio.sleep(0.05)
        asyncio.run(wait())
    finally:
        for b, _ in upstreams.values():
            b.fail_status = None
    (did,) = service.store.frame("decisions")["decision_id"]
    assert logger.recorded == [did]
    o = service.store.outcome(did)
    assert o["source"] == "litellm" and o["status"] == "error" and o["upstream_status"] == 500 and o["cost"] == 0.0
    fb = service.store.frame("feedback").set_index("decision_id")
    assert fb.loc[did, "score"] == 0.0  # the failed-call rule: the decision reaches the logs with its propensity


def test_pending_decisions_are_bounded_and_a_retry_keeps_its_first_decision():
    from causal_router.integrations.litellm import _Pending

    p = _Pending(limit=3)
    for i in range(5):
        p.put(f"t{i}", "openai/a", f"d{i}")
    assert p.take("t0", {"a"}, None) is None and p.take("t1", {"a"}, None) is None  # the oldest went first
    p.put("t2", "openai/b", "d2b")
    assert p.take("t2", {"b", "openai/b"}, "call-1") == "d2b"  # the served deployment's entry
    assert p.take("t2", {"b", "openai/b"}, "call-1") == "d2b"  # a retry of the same call: the same decision
    assert p.take("t2", {"x"}, "call-2") == "d2"  # no deployment matches: the text's first entry
    assert p.take("t2", {"a"}, "call-3") is None
