"""The service over real HTTP (serving/api.py): uvicorn on a free loopback port, the tiny router and encoder."""

import json
import threading
import time

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest

from causal_router.serving.store import DecisionStore
from tests.serving.tiny import MODELS, TOKENS_PER_CHAR, LinearRouter, TinyEncoder

PROMPTS = [f"prompt number {i}: what is {i} + {i}?" for i in range(40)]


def _no_traceback(r: httpx.Response):
    body = r.json()
    assert set(body) == {"message", "request_id"} and body["message"] and body["request_id"]
    text = r.text
    assert "Traceback" not in text and 'File "' not in text and "site-packages" not in text and "/src/" not in text
    assert r.headers["x-request-id"] == body["request_id"]
    return body["message"]


def test_round_trip_route_feedback_ingest(live, settings, tmp_path):
    from causal_router.serving.ingest import ingest

    srv = live()
    health = httpx.get(srv.url + "/healthz").json()
    assert health["status"] == "ok" and health["model"] == "causal-router-interval" and health["version"] == "1"
    r = httpx.post(srv.url + "/v1/route", json={"prompts": PROMPTS[:20], "lam": 50.0, "explore": 0.5})
    assert r.status_code == 200, r.text
    decisions = r.json()["decisions"]
    assert len(decisions) == 20
    for d in decisions:
        assert set(d) == {"decision_id", "model", "propensity", "router_version", "lam"}
        assert d["model"] in MODELS and 0 < d["propensity"] <= 1 and d["router_version"] == "1" and d["lam"] == 50.0
    assert len({d["model"] for d in decisions}) > 1  # explore=0.5 does explore
    for i, d in enumerate(decisions):
        fb = httpx.post(srv.url + "/v1/feedback", json={"decision_id": d["decision_id"], "score": i / 20,
                                                         "cost": 0.001 * i, "output_tokens": 10 + i})
        assert fb.status_code == 200, fb.text
    report = ingest(DecisionStore(settings.decisions_uri), tmp_path / "data", holdout_fraction=0.25, dvc=False)
    assert report.added == 20 and report.to_holdout == 5 and report.to_train == 15
    logs = pd.concat([pd.read_parquet(tmp_path / "data" / f) for f in ("train.parquet", "holdout.parquet")])
    by_id = logs.set_index("prompt_id")
    for i, d in enumerate(decisions):
        row = by_id.loc[d["decision_id"]]
        assert row["model"] == d["model"] and row["propensity"] == pytest.approx(d["propensity"])
        vector = json.loads(row["propensities"])  # the whole served distribution, the drawn model's entry exact
        assert set(vector) <= set(MODELS) and sum(vector.values()) == pytest.approx(1.0)
        assert vector[d["model"]] == d["propensity"] and len(vector) == len(MODELS)  # explore 0.5: all served
        assert row["score"] == pytest.approx(i / 20) and row["cost"] == pytest.approx(0.001 * i)
        assert row["prompt"] == PROMPTS[i] and row["output_tokens"] == 10 + i
        # whole tokens (a count), as logs and price sheets have them
        assert row["input_tokens"] == round(len(PROMPTS[i]) * TOKENS_PER_CHAR)


def test_explore_zero_routes_to_the_routers_choice_with_propensity_one(live):
    srv = live()
    r = httpx.post(srv.url + "/v1/route", json={"prompts": PROMPTS, "lam": 30.0, "explore": 0.0}).json()
    X = TinyEncoder().encode(PROMPTS)
    expected = np.asarray(MODELS)[LinearRouter().scores(X, 30.0).argmax(1)]
    assert [d["model"] for d in r["decisions"]] == list(expected)
    assert all(d["propensity"] == 1.0 for d in r["decisions"])


def test_seeded_service_draws_are_reproducible(make_app, tmp_path):
    from tests.serving.conftest import LiveServer

    runs = []
    for k in range(2):  # fresh stores: how thin each model's logs are steers exploration too
        with LiveServer(make_app(seed=123, decisions_uri=f"sqlite:///{tmp_path / f'd{k}.db'}")) as srv:
            r = httpx.post(srv.url + "/v1/route", json={"prompts": PROMPTS, "lam": 30.0, "explore": 0.6}).json()
            runs.append([(d["model"], d["propensity"]) for d in r["decisions"]])
    assert runs[0] == runs[1]


def test_token_is_required_when_set(live, monkeypatch):
    monkeypatch.setenv("CAUSAL_ROUTER_API_TOKEN", "s3cret")
    srv = live()
    body = {"prompts": ["hi"], "lam": 1.0}
    assert httpx.get(srv.url + "/healthz").status_code == 200  # health checks need no token
    wrong = ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}, {"Authorization": "Basic s3cret"})
    for headers in wrong:
        for path, payload in (("/v1/route", body), ("/v1/feedback", {"decision_id": "x", "score": 0.5})):
            r = httpx.post(srv.url + path, json=payload, headers=headers)
            assert r.status_code == 401 and "token" in _no_traceback(r)
            assert r.headers["www-authenticate"] == "Bearer" and r.json()["request_id"] == r.headers["x-request-id"]
    r = httpx.post(srv.url + "/v1/route", json=body, headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200


def test_the_service_warns_when_no_token_is_set(make_app, caplog):
    with caplog.at_level("WARNING"):
        make_app()
    assert "CAUSAL_ROUTER_API_TOKEN" in caplog.text


BAD_ROUTES = [
    ('{"prompts": ["a"]}', 422, "lam: is required"),
    ('{"prompts": ["a"], "lam": 1000}', 422, "[0, 100]"),
    ('{"prompts": ["a"], "lam": -1}', 422, "[0, 100]"),
    ('{"prompts": ["a"], "lam": NaN}', 422, "finite"),
    ('{"prompts": ["a"], "lam": Infinity}', 422, "finite"),
    ('{"prompts": ["a"], "lam": "cheap"}', 422, "lam"),
    ('{"prompts": [], "lam": 1}', 422, "prompts"),
    ('{"prompts": [""], "lam": 1}', 422, "prompts"),
    ('{"prompts": "a", "lam": 1}', 422, "prompts"),
    ('{"prompts": ["a"], "lam": 1, "explore": 2}', 422, "explore"),
    ('{"prompts": ["a"], "lam": 1, "colour": "red"}', 422, "colour"),
    ('{"prompts": ["a"], "lam": ', 422, "JSON"),
    ('[1, 2]', 422, "body"),
    (json.dumps({"prompts": ["a"] * 51, "lam": 1}), 413, "51 prompts exceed the limit of 50"),
    (json.dumps({"prompts": ["a" * 2001], "lam": 1}), 413, "2000 characters"),
]


def test_bad_route_bodies_get_4xx_json_without_traceback(live):
    srv = live()
    with httpx.Client(base_url=srv.url) as c:
        for body, status, words in BAD_ROUTES:
            r = c.post("/v1/route", content=body, headers={"content-type": "application/json"})
            assert r.status_code == status, (body, r.text)
            assert words in _no_traceback(r), (body, r.text)
        big = json.dumps({"prompts": ["x" * 1000] * 10_000, "lam": 1})  # a 10 MB body
        assert len(big) > 10_000_000
        start = time.perf_counter()
        r = c.post("/v1/route", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "exceeds the limit" in _no_traceback(r)
        assert time.perf_counter() - start < 10

        def chunks():  # no content-length: the limit holds while streaming too
            for _ in range(200):
                yield b"x" * 10_000

        r = c.post("/v1/route", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and "exceeds the limit" in _no_traceback(r)


def test_bad_feedback_gets_4xx_json_without_traceback(live):
    srv = live()
    with httpx.Client(base_url=srv.url) as c:
        did = c.post("/v1/route", json={"prompts": ["a"], "lam": 1}).json()["decisions"][0]["decision_id"]
        cases = [
            ({"decision_id": "no-such-decision", "score": 0.5, "cost": 0.0}, 404, "unknown decision_id"),
            ({"decision_id": did, "score": 1.5, "cost": 0.0}, 422, "score"),
            ({"decision_id": did, "score": -0.1, "cost": 0.0}, 422, "score"),
            ({"decision_id": did, "score": 0.5, "cost": -1.0}, 422, "cost"),
            ({"decision_id": did, "score": 0.5, "cost": float("nan")}, 422, "finite"),
            ({"decision_id": did, "score": 0.5, "output_tokens": -3}, 422, "output_tokens"),
            ({"decision_id": did}, 422, "score: is required"),
            ({"decision_id": did, "score": 0.5}, 422, "cost is missing"),  # neither cost nor output tokens
        ]
        for body, status, words in cases:
            r = c.post("/v1/feedback", content=json.dumps(body), headers={"content-type": "application/json"})
            assert r.status_code == status, (body, r.text)
            assert words in _no_traceback(r), (body, r.text)
        assert c.post("/v1/feedback", json={"decision_id": did, "score": 0.5, "cost": 0.01}).status_code == 200
        r = c.post("/v1/feedback", json={"decision_id": did, "score": 0.9, "cost": 0.01})
        assert r.status_code == 409 and "already has feedback" in _no_traceback(r)


def test_feedback_cost_is_computed_from_the_price_sheet(live, tmp_path):
    sheet = tmp_path / "prices.yaml"
    sheet.write_text("model-a: {input: 1.0, output: 2.0}\nmodel-b: {input: 3.0, output: 4.0}\n"
                     "model-c: {input: 5.0, output: 6.0}\n")
    srv = live(prices=str(sheet))
    d = httpx.post(srv.url + "/v1/route", json={"prompts": ["abcdefgh" * 10], "lam": 1}).json()["decisions"][0]
    r = httpx.post(srv.url + "/v1/feedback", json={"decision_id": d["decision_id"], "score": 1.0, "output_tokens": 100})
    assert r.status_code == 200, r.text
    pin, pout = {"model-a": (1, 2), "model-b": (3, 4), "model-c": (5, 6)}[d["model"]]
    assert r.json()["cost"] == pytest.approx((80 * TOKENS_PER_CHAR * pin + 100 * pout) / 1e6)


def test_internal_errors_are_json_without_traceback(registry, settings):
    from causal_router.serving.api import create_app
    from tests.serving.conftest import LiveServer

    class Broken(TinyEncoder):
        def encode(self, texts):
            raise RuntimeError("secret internal detail at /srv/app/encoder.py")

    with LiveServer(create_app(settings, encoder=Broken())) as srv:
        r = httpx.post(srv.url + "/v1/route", json={"prompts": ["a"], "lam": 1})
    assert r.status_code == 500
    msg = _no_traceback(r)
    assert "secret" not in msg and r.json()["request_id"] in msg


DOCS = ("/docs", "/redoc", "/openapi.json")


def test_docs_and_openapi_are_served(live):
    srv = live()
    assert httpx.get(srv.url + "/docs").status_code == 200
    spec = httpx.get(srv.url + "/openapi.json").json()
    assert {"/healthz", "/v1/route", "/v1/feedback"} <= set(spec["paths"])


@pytest.mark.parametrize("mode, without, with_token", [("open", 200, 200), ("token", 401, 200), ("off", 401, 404)])
def test_the_docs_follow_serve_docs_when_a_token_is_set(live, monkeypatch, mode, without, with_token):
    """serve.docs: open (default; the API's shape holds no data), token (like the endpoints) or off (not
    served: 404 with the token, and 401 without it, as for any path but /healthz);
    the endpoints need the token whatever the docs' mode."""
    monkeypatch.setenv("CAUSAL_ROUTER_API_TOKEN", "s3cret")
    srv = live(docs=mode)
    auth = {"Authorization": "Bearer s3cret"}
    for path in DOCS:
        assert httpx.get(srv.url + path).status_code == without, path
        assert httpx.get(srv.url + path, headers=auth).status_code == with_token, path
    assert httpx.post(srv.url + "/v1/route", json={"prompts": ["hi"], "lam": 1.0}).status_code == 401
    assert httpx.post(srv.url + "/v1/route", json={"prompts": ["hi"], "lam": 1.0}, headers=auth).status_code == 200


def test_serve_docs_rejects_an_unknown_mode(tmp_path):
    from causal_router.serving.settings import ServeSettings

    (tmp_path / "params.yaml").write_text("serve:\n  docs: public\n")
    with pytest.raises(ValueError, match=r"serve.docs: Input should be 'open', 'token' or 'off', got 'public'"):
        ServeSettings.from_params(tmp_path / "params.yaml")


def test_an_alias_move_reloads_the_model(live, registry):
    srv = live()
    first = httpx.post(srv.url + "/v1/route", json={"prompts": ["a"], "lam": 1}).json()["decisions"][0]
    assert first["router_version"] == "1"
    mlflow.MlflowClient(registry, registry).set_registered_model_alias("causal-router-interval", "champion", "2")
    deadline = time.monotonic() + 20
    while httpx.get(srv.url + "/healthz").json()["version"] != "2":
        assert time.monotonic() < deadline, "the service did not pick up the alias move"
        time.sleep(0.1)
    after = httpx.post(srv.url + "/v1/route", json={"prompts": ["a"], "lam": 1}).json()["decisions"][0]
    assert after["router_version"] == "2"
    rows = srv.server.config.app.state.store.frame("decisions").set_index("decision_id")
    assert rows.loc[first["decision_id"], "router_version"] == "1"
    assert rows.loc[after["decision_id"], "router_version"] == "2"


@pytest.mark.slow
def test_concurrent_clients_leave_exactly_one_row_per_decision_and_feedback(live):
    """8 clients x 200 single-prompt requests, each followed by the previous decision's feedback."""
    srv = live(batch_window_ms=5, max_batch=32)
    app = srv.server.config.app
    acked_decisions, acked_feedback, errors = [], [], []
    lock = threading.Lock()

    def client(k):
        mine, fb = [], []
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            prev = None
            for i in range(200):
                r = c.post("/v1/route", json={"prompts": [f"client {k} request {i}"], "lam": 20.0})
                if r.status_code != 200:
                    errors.append(r.text)
                    continue
                did = r.json()["decisions"][0]["decision_id"]
                mine.append(did)
                if prev is not None:
                    f = c.post("/v1/feedback", json={"decision_id": prev, "score": 0.5, "cost": 0.001})
                    if f.status_code == 200:
                        fb.append(prev)
                    else:
                        errors.append(f.text)
                prev = did
        with lock:
            acked_decisions.extend(mine)
            acked_feedback.extend(fb)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(acked_decisions) == 1600 and len(set(acked_decisions)) == 1600
    store = app.state.store
    rows = store.frame("decisions")
    assert len(rows) == 1600 and set(rows["decision_id"]) == set(acked_decisions)
    fb = store.frame("feedback")
    assert len(fb) == len(acked_feedback) == 8 * 199 and set(fb["decision_id"]) == set(acked_feedback)
    # concurrent single-prompt requests were embedded together
    assert app.state.batcher.batches < 1600 and app.state.batcher.items == 1600


def test_the_registered_challenger_rides_along_and_follows_its_alias(make_app, registry):
    """With ``challenger_share`` > 0 the service loads ``@challenger`` beside ``@champion`` (not when it
    is the champion's version, nor with share 0) and picks up its moves."""
    client = mlflow.MlflowClient(registry, registry)
    client.set_registered_model_alias("causal-router-interval", "challenger", "2")
    holder = make_app(challenger_share=1.0).state.holder
    assert (holder.current.version, holder.current.challenger_version) == ("1", "2")
    assert holder.current.challenger is not None
    client.set_registered_model_alias("causal-router-interval", "challenger", "1")
    assert holder.check() and holder.current.challenger_version == "" and holder.current.challenger is None
    assert not holder.check()
    assert make_app(challenger_share=0.0).state.holder.current.challenger_version == ""

def test_route_parses_its_own_body_with_fastapis_messages_and_answers_the_response_models_fields(make_app):
    """POST /v1/route reads and validates its body itself (pydantic's JSON parser) and writes its own
    JSON: the 422 messages FastAPI gave, and each decision's fields are the response model's."""
    from fastapi.testclient import TestClient

    from causal_router.serving.messages import Decision

    with TestClient(make_app()) as c:
        r = c.post("/v1/route", content=b"", headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["message"] == "body: is required"
        r = c.post("/v1/route", content=b'{"prompts": ["a"], "lam": 1}', headers={"content-type": "text/plain"})
        assert r.status_code == 422 and r.json()["message"].startswith("body: ")
        r = c.post("/v1/route", content=b'{"prompts": ["a", 3], "lam": 1}')  # no content-type: JSON
        assert r.status_code == 422 and r.json()["message"].startswith("prompts.1: ")
        r = c.post("/v1/route", content=b'{"prompts": ["a"], "lam": 1}',
                   headers={"content-type": "application/vnd.api+json; charset=utf-8"})
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        decisions = r.json()["decisions"]
        assert len(decisions) == 1 and list(decisions[0]) == list(Decision.model_fields)
    spec = make_app().openapi()["paths"]["/v1/route"]["post"]
    assert spec["security"] == [{"HTTPBearer": []}]
    assert set(spec["requestBody"]["content"]["application/json"]["schema"]["properties"]) == {
        "prompts", "lam", "explore"}
