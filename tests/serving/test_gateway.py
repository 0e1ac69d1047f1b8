"""The gateway (serving/gateway.py) over real HTTP: the official openai client against uvicorn, the
direct client or LiteLLM (``serve.gateway_client``, serving/upstream.py) calling local stub upstreams
(integrations/stub_upstream.py) that answer known text and usage, fail or stall; recording, feedback,
ingest, failures and the start-up checks."""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import json  # noqa: E402

import httpx  # noqa: E402
import openai  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from causal_router.serving.store import DecisionStore  # noqa: E402
from tests.serving import upstreams as stub_upstreams  # noqa: E402
from tests.serving.tiny import MODELS, LinearRouter, TinyEncoder  # noqa: E402
from tests.serving.upstreams import PRICES, USAGE  # noqa: E402

upstreams = stub_upstreams.upstreams  # the stub upstreams fixture (module scope)

KEY_ENV, KEY = "CR_TEST_UPSTREAM_KEY", "sk-test-0123456789-secret"
ASK = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture
def stubs(upstreams, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    for b, _ in upstreams.values():
        b.fail_status, b.stall_s, b.break_after, b.chunk_delay_s, b.calls[:] = None, 0.0, None, 0.0, []
    return {m: b for m, (b, _) in upstreams.items()}


def write_gateway(path, upstreams, fallbacks=None, timeout=None, models=MODELS, prices=True, factor=1.0):
    entries = []
    for m in models:
        params = {"model": f"openai/{m}", "api_base": upstreams[m][1] + "/v1", "api_key": f"os.environ/{KEY_ENV}"}
        if prices:
            params.update(input_cost_per_token=PRICES[m][0] * factor, output_cost_per_token=PRICES[m][1] * factor)
        entries.append({"model_name": m, "litellm_params": params})
    rs = {k: v for k, v in (("fallbacks", fallbacks), ("timeout", timeout)) if v is not None}
    path.write_text(yaml.safe_dump({"model_list": entries, **({"router_settings": rs} if rs else {})}))
    return str(path)


@pytest.fixture
def gw(live, upstreams, stubs, tmp_path):
    def start(**overrides):
        file = write_gateway(tmp_path / "gateway.yaml", upstreams, overrides.pop("fallbacks", None),
                             overrides.pop("timeout", None))
        return live(gateway=file, **overrides)
    return start


def client(srv, **kw):
    return openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0, **kw)


def chosen(text, lam):
    """The tiny router's choice at explore 0."""
    return MODELS[int(LinearRouter().scores(TinyEncoder().encode([text]), lam).argmax(1)[0])]


@pytest.mark.parametrize("via", ["direct", "litellm"])
def test_openai_client_gets_routed_answers_with_headers_and_recorded_cost(gw, stubs, settings, via):
    srv = gw(gateway_client=via)
    c = client(srv)
    seen = set()
    for i in range(12):
        msgs = [*ASK[:1], {"role": "user", "content": f"question {i}"}]
        raw = c.chat.completions.with_raw_response.create(model="causal-router", messages=msgs,
                                                          extra_body={"causal_router": {"lam": 50.0, "explore": 0.6}})
        comp = raw.parse()
        h = raw.headers
        model, did = h["x-causal-router-model"], h["x-causal-router-decision-id"]
        seen.add(model)
        assert model in MODELS and comp.model == model and comp.choices[0].message.content == f"answer from {model}"
        assert 0 < float(h["x-causal-router-propensity"]) <= 1 and float(h["x-causal-router-lam"]) == 50.0
        assert comp.usage.prompt_tokens == USAGE[model][0]
        call = stubs[model].calls[-1]
        assert call["body"]["model"] == model and call["body"]["messages"] == msgs  # the conversation, unchanged
        assert call["authorization"] == f"Bearer {KEY}"  # the key from the environment reaches the upstream only
        store = DecisionStore(settings.decisions_uri)
        o = store.outcome(did)
        assert o["status"] == "ok" and o["upstream_status"] == 200 and o["source"] == "gateway"
        assert (o["input_tokens"], o["output_tokens"]) == USAGE[model] and o["latency_ms"] > 0
        assert o["cost"] == pytest.approx(USAGE[model][0] * PRICES[model][0] + USAGE[model][1] * PRICES[model][1])
        d = store.frame("decisions").set_index("decision_id").loc[did]
        assert d["prompt"] == f"question {i}"  # routed on the last user message
        assert json.loads(d["propensities"])[model] == pytest.approx(float(h["x-causal-router-propensity"]))
    assert len(seen) > 1
    dump = json.dumps(DecisionStore(settings.decisions_uri).frame("outcomes").astype(str).to_dict())
    assert KEY not in dump


def test_a_gateway_file_edited_while_serving_prices_the_next_call(gw, stubs, settings, upstreams, tmp_path):
    srv = gw()
    c = client(srv)

    def cost_of_a_call(i):
        raw = c.chat.completions.with_raw_response.create(
            model="causal-router", messages=[{"role": "user", "content": f"q {i}"}],
            extra_body={"causal_router": {"lam": 50.0}})
        model = raw.headers["x-causal-router-model"]
        base = USAGE[model][0] * PRICES[model][0] + USAGE[model][1] * PRICES[model][1]
        return DecisionStore(settings.decisions_uri).outcome(raw.headers["x-causal-router-decision-id"])["cost"] / base

    file = tmp_path / "gateway.yaml"
    assert cost_of_a_call(0) == pytest.approx(1.0)
    write_gateway(file, upstreams, factor=3.0)
    assert cost_of_a_call(1) == pytest.approx(3.0)  # no restart
    write_gateway(file, upstreams, models=MODELS[:2], factor=5.0)  # removes a model: needs a restart
    assert cost_of_a_call(2) == pytest.approx(3.0)
    file.write_text("model_list: [")  # half-written
    assert cost_of_a_call(3) == pytest.approx(3.0)
    assert c.chat.completions.create(model="causal-router", messages=[{"role": "user", "content": "still up"}],
                                     extra_body={"causal_router": {"lam": 50.0}}).choices[0].message.content


@pytest.mark.parametrize("via", ["direct", "litellm"])
@pytest.mark.parametrize("client_usage", [True, False])
def test_streaming_through_the_openai_client_records_usage(gw, stubs, settings, client_usage, via):
    srv = gw(gateway_client=via)
    kw = {"stream_options": {"include_usage": True}} if client_usage else {}
    with client(srv).chat.completions.with_streaming_response.create(
            model="causal-router", messages=ASK, stream=True, extra_body={"causal_router": {"lam": 0.0}},
            **kw) as resp:
        model, did = resp.headers["x-causal-router-model"], resp.headers["x-causal-router-decision-id"]
        chunks = list(resp.parse())
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == f"answer from {model}" and all(ch.model == model for ch in chunks)
    usage = [ch.usage for ch in chunks if ch.usage]
    assert (len(usage) == 1 and usage[0].completion_tokens == USAGE[model][1]) if client_usage else not usage
    assert stubs[model].calls[-1]["body"]["stream_options"] == {"include_usage": True}  # asked upstream anyway
    o = DecisionStore(settings.decisions_uri).outcome(did)
    assert o["status"] == "ok" and (o["input_tokens"], o["output_tokens"]) == USAGE[model]


@pytest.mark.parametrize("via", ["direct", "litellm"])
def test_a_stream_that_breaks_mid_way_ends_with_an_error_event_and_a_recorded_outcome(gw, stubs, settings, via):
    srv = gw(gateway_client=via)
    for b in stubs.values():
        b.break_after = 2  # the role chunk and the first word, then the connection drops
    events = []
    with httpx.stream("POST", srv.url + "/v1/chat/completions", timeout=30, json={
            "model": "causal-router", "messages": ASK, "stream": True, "causal_router": {"lam": 0.0}}) as r:
        assert r.status_code == 200
        did, model = r.headers["x-causal-router-decision-id"], r.headers["x-causal-router-model"]
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and "error" in json.loads(events[-2])
    assert f"upstream {model} failed" in json.loads(events[-2])["error"]["message"]
    words = [json.loads(e)["choices"][0]["delta"].get("content") for e in events[:-2]]
    assert "".join(w or "" for w in words) == "answer"  # what came before the break reached the client
    store = DecisionStore(settings.decisions_uri)
    o = store.outcome(did)
    assert o["status"] == "error" and o["latency_ms"] > 0 and o["input_tokens"] is None  # no usage came
    fb = store.frame("feedback").set_index("decision_id")
    assert fb.loc[did, "score"] == 0.0  # the failed-call rule: it reaches the logs with its propensity
    assert KEY not in json.dumps(o, default=str)


def test_a_client_that_goes_away_mid_stream_still_gets_its_decision_recorded(gw, stubs, settings):
    import time

    srv = gw()
    for b in stubs.values():
        b.chunk_delay_s = 0.2  # a slow stream: the client leaves after the first chunk
    with httpx.stream("POST", srv.url + "/v1/chat/completions", timeout=30, json={
            "model": "causal-router", "messages": ASK, "stream": True, "causal_router": {"lam": 0.0}}) as r:
        did = r.headers["x-causal-router-decision-id"]
        next(r.iter_lines())
    store, deadline = DecisionStore(settings.decisions_uri), time.monotonic() + 20
    while store.outcome(did) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    o = store.outcome(did)
    assert o is not None and o["status"] == "error" and "disconnected" in o["error"]


def test_a_client_may_not_set_where_or_how_the_model_is_called(gw, stubs):
    srv = gw()
    for key, value in (("api_base", "http://127.0.0.1:9/v1"), ("api_key", "x"), ("mock_response", "fake"),
                       ("input_cost_per_token", 0), ("litellm_logging_obj", None)):
        r = httpx.post(srv.url + "/v1/chat/completions", json={
            "model": "causal-router", "messages": ASK, "causal_router": {"lam": 0.0}, key: value})
        assert r.status_code == 422 and key in r.json()["message"] and "Traceback" not in r.text
    assert not any(b.calls for b in stubs.values())


def test_lambda_from_body_then_header_then_params_else_422(gw, settings):
    srv = gw()
    c = client(srv)
    with pytest.raises(openai.UnprocessableEntityError) as err:
        c.chat.completions.create(model="causal-router", messages=ASK)
    assert "lam is not set" in err.value.body["message"] and "x-causal-router-lam" in err.value.body["message"]
    raw = c.chat.completions.with_raw_response.create(model="causal-router", messages=ASK,
                                                      extra_headers={"x-causal-router-lam": "25"})
    assert float(raw.headers["x-causal-router-lam"]) == 25.0
    raw = c.chat.completions.with_raw_response.create(model="causal-router", messages=ASK,
                                                      extra_headers={"x-causal-router-lam": "25"},
                                                      extra_body={"causal_router": {"lam": 75}})
    assert float(raw.headers["x-causal-router-lam"]) == 75.0
    srv2 = gw(lam=10.0, decisions_uri=f"sqlite:///{settings.root}/d2.db")
    raw = client(srv2).chat.completions.with_raw_response.create(model="causal-router", messages=ASK)
    assert float(raw.headers["x-causal-router-lam"]) == 10.0
    r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "gpt-4", "messages": ASK})
    assert r.status_code == 404 and "causal-router" in r.json()["message"]
    r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "causal-router", "messages": ASK,
                                                           "causal_router": {"lam": 1e9}})
    assert r.status_code == 422 and "lambda interval" in r.json()["message"]


def test_feedback_adds_quality_only_and_ingest_logs_the_recorded_cost(gw, settings, tmp_path):
    from causal_router.serving.ingest import ingest

    srv = gw()
    c = client(srv)
    ids = []
    for i in range(8):
        raw = c.chat.completions.with_raw_response.create(
            model="causal-router", messages=[{"role": "user", "content": f"q{i}"}],
            extra_body={"causal_router": {"lam": 50.0, "explore": 0.5}})
        ids.append((raw.headers["x-causal-router-decision-id"], raw.headers["x-causal-router-model"],
                    float(raw.headers["x-causal-router-propensity"])))
    expected = {d: USAGE[m][0] * PRICES[m][0] + USAGE[m][1] * PRICES[m][1] for d, m, _ in ids}
    for k, (d, _, _) in enumerate(ids[:6]):
        r = httpx.post(srv.url + "/v1/feedback", json={"decision_id": d, "score": k / 10})
        assert r.status_code == 200 and r.json()["cost"] == pytest.approx(expected[d])
    r = httpx.post(srv.url + "/v1/feedback", json={"decision_id": ids[6][0], "score": 0.5, "cost": 1.0})
    assert r.status_code == 409 and "recorded its cost" in r.json()["message"]  # never silently replaced
    r = httpx.post(srv.url + "/v1/feedback", json={"decision_id": ids[6][0], "score": 0.5, "cost": expected[ids[6][0]]})
    assert r.status_code == 200  # the same cost is fine
    store = DecisionStore(settings.decisions_uri)
    report = ingest(store, tmp_path / "data", holdout_fraction=0.0, dvc=False, reward_wait_s=3600)
    assert report.added == 7 and report.no_feedback == 0
    rates = report.feedback_rates.values()
    assert sum(f for f, _ in rates) == 7 and sum(n for _, n in rates) == 8
    assert "feedback rate" in report.summary()
    logs = pd.read_parquet(tmp_path / "data" / "train.parquet").set_index("prompt_id")
    for d, m, p in ids[:7]:
        row = logs.loc[d]
        assert row["model"] == m and row["cost"] == pytest.approx(expected[d]) and row["propensity"] == p
        assert (row["input_tokens"], row["output_tokens"]) == USAGE[m]  # the upstream's usage
        assert json.loads(row["propensities"])[m] == p
    # the no-feedback rule: past the wait, the last decision goes to no_feedback.parquet, never to training
    report = ingest(store, tmp_path / "data", holdout_fraction=0.0, dvc=False, reward_wait_s=0)
    assert report.no_feedback == 1 and report.added == 0
    nf = pd.read_parquet(tmp_path / "data" / "no_feedback.parquet")
    assert list(nf["prompt_id"]) == [ids[7][0]] and nf["feedback_missing"].all() and "score" not in nf
    assert nf["cost"].iloc[0] == pytest.approx(expected[ids[7][0]])
    assert ids[7][0] not in set(pd.read_parquet(tmp_path / "data" / "train.parquet")["prompt_id"])
    r = httpx.post(srv.url + "/v1/feedback", json={"decision_id": ids[7][0], "score": 1.0})
    assert r.status_code == 409 and "feedback_missing" in r.json()["message"]
    assert ingest(store, tmp_path / "data", dvc=False, reward_wait_s=0).no_feedback == 0  # once


def _no_traceback(r):
    assert set(r.json()) == {"message", "request_id"}
    assert "Traceback" not in r.text and 'File "' not in r.text and KEY not in r.text
    return r.json()["message"]


@pytest.mark.parametrize("via", ["direct", "litellm"])
def test_failing_upstream_without_fallbacks_is_a_clean_502_and_a_recorded_outcome(gw, stubs, settings, caplog, via):
    srv = gw(gateway_client=via)
    for b in stubs.values():
        b.fail_status = 500
    r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "causal-router", "messages": ASK,
                                                           "causal_router": {"lam": 0.0, "explore": 0.0}})
    assert r.status_code == 502
    model = chosen(ASK[-1]["content"], 0.0)
    msg = _no_traceback(r)
    assert model in msg and "HTTP 500" in msg and "no fallbacks" in msg
    store = DecisionStore(settings.decisions_uri)
    d = store.frame("decisions").iloc[-1]
    o = store.outcome(d["decision_id"])
    assert o["status"] == "error" and o["upstream_status"] == 500 and o["cost"] == 0.0
    fb = store.frame("feedback").set_index("decision_id").loc[d["decision_id"]]
    assert fb["score"] == 0.0  # the failure rule's score: the row reaches the logs with the policy's propensity
    r = httpx.post(srv.url + "/v1/feedback", json={"decision_id": d["decision_id"], "score": 1.0})
    assert r.status_code == 409 and "failed upstream" in r.json()["message"]
    assert KEY not in caplog.text


@pytest.mark.parametrize("via", ["direct", "litellm"])
def test_stalled_upstream_falls_back_as_a_separate_decision_kept_out_of_the_logs(gw, stubs, settings, tmp_path, via):
    from causal_router.serving.ingest import ingest

    text = ASK[-1]["content"]
    first = chosen(text, 0.0)
    other = next(m for m in MODELS if m != first)
    srv = gw(fallbacks=[{first: [other]}], timeout=0.5, gateway_client=via)
    stubs[first].stall_s = 5.0
    raw = client(srv).chat.completions.with_raw_response.create(
        model="causal-router", messages=ASK, extra_body={"causal_router": {"lam": 0.0, "explore": 0.0}})
    comp, h = raw.parse(), raw.headers
    assert comp.model == other and comp.choices[0].message.content == f"answer from {other}"
    assert h["x-causal-router-model"] == other and float(h["x-causal-router-propensity"]) == 1.0
    store = DecisionStore(settings.decisions_uri)
    decisions = store.frame("decisions").set_index("decision_id")
    policy_id = h["x-causal-router-fallback-of"]
    assert decisions.loc[policy_id, "model"] == first and decisions.loc[policy_id, "propensity"] == 1.0
    assert decisions.loc[h["x-causal-router-decision-id"], "fallback_of"] == policy_id
    assert store.outcome(policy_id)["status"] == "timeout" and store.outcome(policy_id)["upstream_status"] is None
    assert store.outcome(h["x-causal-router-decision-id"])["status"] == "ok"
    assert httpx.post(srv.url + "/v1/feedback", json={"decision_id": h["x-causal-router-decision-id"],
                                                      "score": 0.9}).status_code == 200
    report = ingest(store, tmp_path / "data", holdout_fraction=0.0, dvc=False)
    assert report.added == 1 and report.fallbacks == 1
    logs = pd.read_parquet(tmp_path / "data" / "train.parquet")
    assert list(logs["prompt_id"]) == [policy_id] and logs["score"].iloc[0] == 0.0 and logs["model"].iloc[0] == first


def test_start_up_checks_are_one_line(registry, settings, upstreams, stubs, tmp_path, monkeypatch):
    from causal_router.serving.api import create_app
    from causal_router.serving.gateway_config import GatewayConfigError, load_gateway

    f = write_gateway(tmp_path / "g1.yaml", upstreams, models=["model-a", "model-b"])
    settings.gateway = f
    with pytest.raises(GatewayConfigError) as err:
        create_app(settings, encoder=TinyEncoder())
    msg = str(err.value)
    assert "\n" not in msg and "routed to but not in the file: ['model-c']" in msg and "not routed to: none" in msg
    f = write_gateway(tmp_path / "g2.yaml", upstreams, prices=False)
    with pytest.raises(GatewayConfigError, match="no prices for model"):
        load_gateway(f, MODELS)
    cfg = load_gateway(f, MODELS, prices={m: (p[0] * 1e6, p[1] * 1e6) for m, p in PRICES.items()})
    assert cfg.models["model-c"].price_source == "price sheet"
    assert cfg.models["model-c"].cost(1, 1) == pytest.approx(sum(PRICES["model-c"]))
    raw = yaml.safe_load(open(f))
    raw["model_list"][0]["litellm_params"]["api_key"] = KEY
    (tmp_path / "g3.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(GatewayConfigError) as err:
        load_gateway(tmp_path / "g3.yaml", MODELS, prices={m: (1, 1) for m in MODELS})
    assert "os.environ/NAME" in str(err.value) and KEY not in str(err.value)
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(GatewayConfigError, match=f"{KEY_ENV}, which is not set"):
        load_gateway(f, MODELS, prices={m: (1, 1) for m in MODELS})


def test_gateway_needs_the_token_like_route(gw, monkeypatch):
    monkeypatch.setenv("CAUSAL_ROUTER_API_TOKEN", "tok")
    srv = gw()
    r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "causal-router", "messages": ASK})
    assert r.status_code == 401
    comp = openai.OpenAI(base_url=srv.url + "/v1", api_key="tok", max_retries=0).chat.completions.create(
        model="causal-router", messages=ASK, extra_body={"causal_router": {"lam": 0.0}})
    assert comp.choices[0].message.content.startswith("answer from")


def test_routing_text_is_the_last_user_message():
    from causal_router.serving.gateway import routing_text

    assert routing_text([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                         {"role": "user", "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}]},
                         {"role": "assistant", "content": "e"}]) == "c\nd"


def test_a_decision_the_log_refuses_is_never_answered_though_its_commit_overlaps_the_call(gw, stubs, settings):
    from causal_router.serving.store import StoreUnavailable

    srv = gw()
    store = srv.server.config.app.state.store
    body = {"model": "causal-router", "messages": ASK, "causal_router": {"lam": 0.0}}
    for _ in range(4):  # past the first lone batches: the decision's commit now runs beside the call
        assert httpx.post(srv.url + "/v1/chat/completions", json=body).status_code == 200
    before, add = len(store.frame("outcomes")), store.add_decisions

    def refuse(rows, wait=True):
        raise StoreUnavailable("the decision log is unavailable (disk full)")

    store.add_decisions = refuse
    try:
        r = httpx.post(srv.url + "/v1/chat/completions", json=body)
    finally:
        store.add_decisions = add
    assert r.status_code == 503 and "choices" not in r.text and "Traceback" not in r.text
    assert len(store.frame("outcomes")) == before  # no outcome without its decision
    assert httpx.post(srv.url + "/v1/chat/completions", json=body).status_code == 200
