"""The service under bad data and hostile load (issue 28): one request's bad data fails it alone, on
SQLite and PostgreSQL; bools, huge numbers, NUL; an unwritable, deleted or lost decision log; two
Authorization headers; timeouts, the bound on requests in flight and fair queuing; no input gives a 5xx."""

import json
import socket
import statistics
import threading
import time

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from causal_router.serving.store import DecisionStore, StoreUnavailable
from tests.serving.test_store import clean, postgres  # noqa: F401 - the module's PostgreSQL server
from tests.serving.tiny import TinyEncoder

NUL = "bad \u0000 prompt"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, settings, monkeypatch):
    """The test's settings on a SQLite file or the PostgreSQL server."""
    if request.param == "postgresql":
        pg = request.getfixturevalue("postgres")
        clean(pg.uri)
        settings.decisions_uri = pg.uri
    return settings


def test_a_poisoned_request_fails_alone_on_both_backends(registry, backend, live):
    srv = live(decisions_uri=backend.decisions_uri, batch_window_ms=30)
    results, lock = [], threading.Lock()

    def client(k):
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            for i in range(5):
                prompts = [NUL] if k == 0 else [f"client {k} prompt {i}"]
                r = c.post("/v1/route", json={"prompts": prompts, "lam": 5.0})
                with lock:
                    results.append((k, r.status_code, r.json()))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(15)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    poisoned = [r for r in results if r[0] == 0]
    innocent = [r for r in results if r[0] != 0]
    assert all(s == 422 and "NUL" in body["message"] for _, s, body in poisoned)
    assert len(innocent) == 70 and all(s == 200 for _, s, _ in innocent)
    fb = httpx.post(srv.url + "/v1/feedback", json={"decision_id": "x\u0000y", "score": 0.5, "cost": 0.1})
    assert fb.status_code == 422 and "NUL" in fb.json()["message"]


def test_the_batcher_retries_a_failed_batch_one_request_at_a_time():
    import asyncio

    from causal_router.serving.batching import MicroBatcher

    def handler(items):
        if "bad" in items:
            raise ValueError("bad row")
        return [x.upper() for x in items]

    async def main():
        b = MicroBatcher(handler, window_s=0.2)
        await b.start()
        try:
            return await asyncio.gather(*(b.submit(x, client=i % 3) for i, x in enumerate(["a", "bad", "c", "d"])),
                                        return_exceptions=True)
        finally:
            await b.stop()

    out = asyncio.run(main())
    assert out[0] == "A" and isinstance(out[1], ValueError) and out[2:] == ["C", "D"]


@pytest.mark.parametrize("body, words", [
    ({"score": 0.5, "cost": 1e308}, "plausibility"),
    ({"score": 0.5, "output_tokens": 10**18}, "plausibility"),
    ({"score": 0.5, "output_tokens": 2**63}, "plausibility"),
    ({"score": 0.5, "output_tokens": 2**31}, "plausibility"),
    ({"score": True, "cost": 0.1}, "score"),
    ({"score": 0.5, "cost": False}, "cost"),
    ({"score": 0.5, "output_tokens": True}, "output_tokens"),
    ({"score": 0.5, "output_tokens": 3.0}, "output_tokens"),
])
def test_implausible_numbers_and_bools_get_422_and_keep_the_connection(live, body, words):
    srv = live()
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        did = c.post("/v1/route", json={"prompts": ["a"], "lam": 5}).json()["decisions"][0]["decision_id"]
        r = c.post("/v1/feedback", json={"decision_id": did, **body})
        assert r.status_code == 422 and words in r.json()["message"], r.text
        assert c.get("/healthz").status_code == 200  # the keep-alive connection still works
        assert c.post("/v1/route", json={"prompts": ["a"], "lam": True}).status_code == 422
        assert c.post("/v1/route", json={"prompts": ["a"], "lam": 5, "explore": True}).status_code == 422


def test_an_unwritable_log_fails_healthz_and_routes_with_503(make_app, settings):
    app = make_app()
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        store = app.state.store
        sa.event.listen(store.engine, "connect", lambda conn, _r: conn.execute("PRAGMA query_only=ON"))
        store.engine.dispose()  # new connections cannot write, as with the log's files made immutable
        h = c.get("/healthz")
        assert h.status_code == 503 and "cannot be written" in h.json()["message"]
        r = c.post("/v1/route", json={"prompts": ["a"], "lam": 5})
        assert r.status_code == 503 and r.headers["retry-after"]


def test_a_deleted_log_is_refused_and_a_new_empty_one_is_an_error(make_app, settings, tmp_path):
    db = tmp_path / "decisions" / "decisions.db"
    app = make_app()
    with TestClient(app) as c:
        assert c.post("/v1/route", json={"prompts": ["a"], "lam": 5}).status_code == 200
        for f in db.parent.glob("decisions.db*"):
            if not f.name.endswith(".expected"):
                f.unlink()
        r = c.post("/v1/route", json={"prompts": ["b"], "lam": 5})
        assert r.status_code == 503 and "deleted or replaced" in r.json()["message"]
        assert c.get("/healthz").status_code == 503
    with pytest.raises(StoreUnavailable, match="missing or empty"):
        DecisionStore(f"sqlite:///{db}")  # a restart would create a new empty log: refused
    (db.parent / "decisions.db.expected").unlink()  # on purpose: a new log
    assert DecisionStore(f"sqlite:///{db}").count("decisions") == 0


def test_two_authorization_headers_are_refused(live, monkeypatch):
    monkeypatch.setenv("CAUSAL_ROUTER_API_TOKEN", "s3cret")
    srv = live()
    headers = [("Authorization", "Bearer wrong"), ("Authorization", "Bearer s3cret")]
    r = httpx.post(srv.url + "/v1/route", json={"prompts": ["a"], "lam": 5}, headers=headers)
    assert r.status_code == 400 and "more than one Authorization" in r.json()["message"]
    r = httpx.post(srv.url + "/v1/route", json={"prompts": ["a"], "lam": 5}, headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200


class SlowEncoder(TinyEncoder):
    """A CPU-bound encoder's time: 2 ms per call plus 1 us per character."""

    def encode(self, texts):
        time.sleep(0.002 + 1e-6 * sum(len(t) for t in texts))
        return super().encode(texts)


def _light_latencies(url, n):
    out = []
    with httpx.Client(base_url=url, timeout=30, headers={"x-client": "light"}) as c:
        for i in range(n):
            t0 = time.perf_counter()
            assert c.post("/v1/route", json={"prompts": [f"light {i}"], "lam": 5}).status_code == 200
            out.append(time.perf_counter() - t0)
            time.sleep(0.01)
    return out


@pytest.mark.slow
def test_a_heavy_client_cannot_starve_a_light_one(registry, settings):
    from causal_router.serving.api import create_app
    from tests.serving.conftest import LiveServer

    settings.batch_window_ms, settings.max_batch_chars, settings.client_key = 5, 8000, "x-client"
    settings.max_prompt_chars, settings.max_body_bytes, settings.max_prompts = 20_000, 2_000_000, 64
    with LiveServer(create_app(settings, encoder=SlowEncoder())) as srv:
        _light_latencies(srv.url, 5)  # warm up
        alone = statistics.median(_light_latencies(srv.url, 40))
        stop = threading.Event()

        def heavy():  # looping 64 prompts of 15,000 characters, as in the issue, through a proxy header
            with httpx.Client(base_url=srv.url, timeout=60, headers={"x-client": "heavy"}) as c:
                while not stop.is_set():
                    c.post("/v1/route", json={"prompts": ["x" * 15_000] * 64, "lam": 5})

        threads = [threading.Thread(target=heavy) for _ in range(2)]
        [t.start() for t in threads]
        time.sleep(0.5)
        try:
            loaded = statistics.median(_light_latencies(srv.url, 40))
        finally:
            stop.set()
            [t.join(timeout=30) for t in threads]
    print(f"light client p50: alone {alone * 1000:.1f} ms, with a heavy client {loaded * 1000:.1f} ms "
          f"(ratio {loaded / alone:.2f})")
    # starved, the light client would wait behind the heavy requests' 128 parts (~17 ms of encoding each:
    # seconds); served fairly, behind at most the heavy part in work and the batch it shares with one. With
    # one write per response, "alone" fell from ~60 to ~15-20 ms here, so a pure ratio no longer says
    # starvation: the bound adds one heavy part's batch (~17 ms, and its commit) to twice the lone latency
    assert loaded <= 2 * alone + 0.05


def _slow_socket(port, data: bytes, hold_s: float):
    s = socket.create_connection(("127.0.0.1", port), timeout=hold_s + 5)
    s.sendall(data)
    return s


@pytest.mark.parametrize("protocol", ["httptools", "h11"])
def test_slow_headers_and_bodies_are_cut_at_their_timeouts(live, protocol, monkeypatch):
    from causal_router.serving import limits

    assert limits.http_protocol() is limits.GuardedHttpToolsProtocol is not None  # the one served
    if protocol == "h11":  # uvicorn's fallback where httptools is missing: guarded the same way
        monkeypatch.setattr(limits, "GuardedHttpToolsProtocol", None)
    srv = live(header_timeout_s=1.0, body_timeout_s=1.0)
    port = int(srv.url.rsplit(":", 1)[1])
    t0 = time.monotonic()
    heads = [_slow_socket(port, b"POST /v1/route HTTP/1.1\r\nHost: x\r\nX-Slow: ", 5) for _ in range(20)]
    bodies = [_slow_socket(port, b"POST /v1/route HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 100\r\n\r\n{\"prom", 5) for _ in range(20)]
    cut = []
    for s in heads + bodies:
        data = b""
        while True:
            chunk = s.recv(4096)  # blocks until the server answers or closes
            if not chunk:
                break
            data += chunk
        cut.append((time.monotonic() - t0, data))
        s.close()
    heads_cut, bodies_cut = cut[:20], cut[20:]
    print(f"slow headers cut after {max(t for t, _ in heads_cut):.2f}s, slow bodies after "
          f"{max(t for t, _ in bodies_cut):.2f}s (timeouts 1 s)")
    assert all(t < 3 and d == b"" for t, d in heads_cut)
    assert all(t < 3 and b" 408 " in d.split(b"\r\n")[0] + b" " for t, d in bodies_cut)
    assert httpx.get(srv.url + "/healthz").status_code == 200


def test_requests_beyond_the_limit_get_503_with_retry_after(registry, settings):
    from causal_router.serving.api import create_app
    from tests.serving.conftest import LiveServer

    class Sleepy(TinyEncoder):
        def encode(self, texts):
            time.sleep(0.3)
            return super().encode(texts)

    settings.max_concurrent, settings.request_timeout_s = 2, 5
    with LiveServer(create_app(settings, encoder=Sleepy())) as srv:
        out = []

        def one(i):
            out.append(httpx.post(srv.url + "/v1/route", json={"prompts": [f"p{i}"], "lam": 5}, timeout=30))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        codes = sorted(r.status_code for r in out)
        assert 200 in codes and 503 in codes and set(codes) <= {200, 503}
        assert all(r.headers.get("retry-after") == "1" for r in out if r.status_code == 503)
        assert httpx.get(srv.url + "/healthz").status_code == 200
    settings.max_concurrent, settings.request_timeout_s = 256, 0.1
    with LiveServer(create_app(settings, encoder=Sleepy())) as srv:
        r = httpx.post(srv.url + "/v1/route", json={"prompts": ["p"], "lam": 5}, timeout=30)
        assert r.status_code == 503 and "longer than" in r.json()["message"] and r.headers["retry-after"]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=6)
FIELD = st.one_of(JSON, st.text(), st.integers(min_value=-2**70, max_value=2**70), st.floats(), st.booleans())


def test_no_input_to_route_or_feedback_gives_a_5xx(make_app, backend):
    kind = "sqlite" if backend.decisions_uri.startswith("sqlite") else "postgresql"
    with TestClient(make_app(), raise_server_exceptions=False) as c:
        known = c.post("/v1/route", json={"prompts": ["seed"], "lam": 5}).json()["decisions"][0]["decision_id"]

        @hsettings(max_examples=120 if kind == "sqlite" else 40, deadline=None,
                   suppress_health_check=list(HealthCheck))
        @given(prompts=st.one_of(FIELD, st.lists(st.text(), max_size=4)), lam=FIELD, explore=FIELD,
               decision_id=st.one_of(FIELD, st.just(known)), score=FIELD, cost=FIELD, tokens=FIELD,
               raw=st.binary(max_size=40))
        def check(prompts, lam, explore, decision_id, score, cost, tokens, raw):
            body = {"prompts": prompts, "lam": lam, "explore": explore}
            r = c.post("/v1/route", content=json.dumps(body, allow_nan=True))
            assert r.status_code < 500, r.text
            body = {"decision_id": decision_id, "score": score, "cost": cost, "output_tokens": tokens}
            r = c.post("/v1/feedback", content=json.dumps(body, allow_nan=True))
            assert r.status_code < 500, r.text
            r = c.post("/v1/feedback", content=raw, headers={"content-type": "application/json"})
            assert r.status_code < 500, r.text

        check()


def test_what_one_event_loop_step_writes_on_a_connection_leaves_in_one_write():
    """A response's status line and headers, then its body (uvicorn writes them apart) go out in one write
    at the next step; close sends what is held first; the rest is the transport's."""
    import asyncio

    from causal_router.serving.limits import _OneWrite

    class Transport:
        def __init__(self):
            self.writes, self.closed = [], False

        def write(self, data):
            self.writes.append(data)

        def close(self):
            self.closed = True

        def is_closing(self):
            return self.closed

    async def main():
        t = Transport()
        w = _OneWrite(t, asyncio.get_running_loop())
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        w.write(b"{}")
        w.write(b"")
        assert t.writes == []  # held until the step ends
        await asyncio.sleep(0)
        assert t.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
        w.writelines([b"a", b"b"])
        w.close()
        assert t.writes[-1] == b"ab" and t.closed and w.is_closing()
        await asyncio.sleep(0)
        assert len(t.writes) == 2  # the scheduled flush finds nothing left

    asyncio.run(main())
