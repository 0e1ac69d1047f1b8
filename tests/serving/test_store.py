"""The decision log on SQLite and on a real PostgreSQL server: append-only, one feedback per decision,
versioned schema, nothing acknowledged lost under concurrency."""

import threading
from datetime import UTC, datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from causal_router.serving.store import DecisionStore, DuplicateFeedback, StoreUnavailable, UnknownDecision
from causal_router.serving.tables import SCHEMA_VERSION
from tests.serving.pg import PostgresServer, why_unavailable


@pytest.fixture(scope="module")
def postgres():
    reason = why_unavailable()
    if reason:
        print(f"SKIP PostgreSQL store tests: {reason}")
        pytest.skip(reason)
    with PostgresServer() as pg:
        yield pg


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = DecisionStore(f"sqlite:///{tmp_path / 'decisions' / 'decisions.db'}")
    else:
        pg = request.getfixturevalue("postgres")
        clean(pg.uri)
        s = DecisionStore(pg.uri)
    yield s
    s.close()


def clean(uri):
    """Drop the store's tables: a clean slate per test on the module's server."""
    engine = sa.create_engine(uri)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS ingested, feedback, decisions, schema_version CASCADE"))
    engine.dispose()


def decision(i: int, model: str = "m-a") -> dict:
    return {"decision_id": f"d{i:05d}", "created_at": datetime.now(UTC), "request_id": f"r{i}", "prompt": f"p{i}",
            "model": model, "propensity": 0.8, "lam": 1.0, "explore": 0.2, "router_name": "r",
            "router_version": "1", "input_tokens": 10.0}


def test_schema_version_is_recorded_and_a_newer_schema_refused(store):
    assert store.schema_version() == SCHEMA_VERSION
    store.create()  # idempotent
    with store.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO schema_version (version, applied_at) VALUES (:v, :t)"),
                     {"v": SCHEMA_VERSION + 1, "t": datetime.now(UTC)})
    with pytest.raises(RuntimeError, match="schema version"):
        store.create()


def test_a_version_1_database_is_upgraded_in_place_and_keeps_its_rows(store):
    """Version 2 added ``decisions.propensities``, version 3 ``decisions.fallback_of`` and the ``outcomes``
    table: opening a version-1 log (both back-ends) adds them, keeps the old rows (NULL in the new
    columns) and records the current version."""
    with store.engine.begin() as conn:  # make it a version-1 log holding one decision
        conn.execute(sa.text("ALTER TABLE decisions DROP COLUMN propensities"))
        conn.execute(sa.text("ALTER TABLE decisions DROP COLUMN fallback_of"))
        conn.execute(sa.text("DROP TABLE outcomes"))
        conn.execute(sa.text("DELETE FROM schema_version"))
        conn.execute(sa.text("INSERT INTO schema_version (version, applied_at) VALUES (1, :t)"),
                     {"t": datetime.now(UTC)})
    old = decision(1)
    with store.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO decisions (decision_id, created_at, request_id, prompt, model, propensity, "
                             "lam, explore, router_name, router_version, input_tokens) VALUES (:decision_id, "
                             ":created_at, :request_id, :prompt, :model, :propensity, :lam, :explore, :router_name, "
                             ":router_version, :input_tokens)"), old)
    upgraded = DecisionStore(store.uri)
    try:
        assert upgraded.schema_version() == SCHEMA_VERSION == 3
        upgraded.add_decisions([{**decision(2), "propensities": '{"m-a":0.8,"m-b":0.2}'}])
        rows = upgraded.frame("decisions").set_index("decision_id")
        assert pd.isna(rows.loc["d00001", "propensities"]) and rows.loc["d00001", "prompt"] == "p1"
        assert pd.isna(rows.loc["d00001", "fallback_of"]) and upgraded.count("outcomes") == 0
        upgraded.add_outcome({"decision_id": "d00001", "source": "gateway", "status": "ok", "cost": 0.5})
        assert upgraded.outcome("d00001")["cost"] == 0.5
        assert rows.loc["d00002", "propensities"] == '{"m-a":0.8,"m-b":0.2}'
        DecisionStore(store.uri).close()  # a second open finds nothing to add
    finally:
        upgraded.close()


def test_feedback_once_per_known_decision(store):
    store.add_decisions([decision(1), decision(2, "m-b")])
    with pytest.raises(UnknownDecision):
        store.add_feedback("nope", 0.5, 0.1, None)
    row = store.add_feedback("d00001", 0.5, None, 7, cost_fn=lambda d, out: d["input_tokens"] + out)
    assert row["cost"] == 17.0
    with pytest.raises(DuplicateFeedback):
        store.add_feedback("d00001", 0.9, 0.1, None)
    assert store.count("feedback") == 1 and store.counts_by_model() == {"m-a": 1, "m-b": 1}
    pending = store.pending()
    assert pending["decision_id"].tolist() == ["d00001"] and pending["score"].tolist() == [0.5]
    store.mark_ingested({"d00001": ("added", None)})
    assert store.pending().empty


def test_a_read_only_sqlite_log_refuses_every_write_as_unavailable(tmp_path):
    """Each write path (decisions, feedback, outcomes, heartbeat) maps a database error to
    StoreUnavailable (503 / a callback's logged error), never a raw SQLAlchemy error."""
    s = DecisionStore(f"sqlite:///{tmp_path / 'decisions.db'}")
    s.add_decisions([decision(1)])
    sa.event.listen(s.engine, "connect", lambda conn, _r: conn.execute("PRAGMA query_only=ON"))
    s.engine.dispose()
    writes = [lambda: s.add_decisions([decision(2)]), lambda: s.add_feedback("d00001", 0.5, 0.1, None),
              lambda: s.add_outcome({"decision_id": "d00001", "source": "litellm", "status": "ok"}), s.check]
    for write in writes:
        with pytest.raises(StoreUnavailable, match="cannot be written"):
            write()
    s.close()
    again = DecisionStore(f"sqlite:///{tmp_path / 'decisions.db'}")
    assert again.count("decisions") == 1 and again.count("outcomes") == 0 and again.count("feedback") == 0
    again.close()


def test_concurrent_writers_lose_nothing_and_duplicates_lose_the_race(store):
    errors = []

    def writer(k):
        try:
            for j in range(25):
                store.add_decisions([decision(k * 1000 + j * 2), decision(k * 1000 + j * 2 + 1)])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and store.count("decisions") == 8 * 50
    outcomes = []

    def feedback():
        try:
            store.add_feedback("d00000", 0.5, 0.1, None)
            outcomes.append("ok")
        except DuplicateFeedback:
            outcomes.append("dup")

    threads = [threading.Thread(target=feedback) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(outcomes) == ["dup"] * 7 + ["ok"] and store.count("feedback") == 1


def test_the_service_runs_on_postgresql(postgres, registry, settings, monkeypatch):
    """Route and feedback through the app with the PostgreSQL store named by the environment."""
    from fastapi.testclient import TestClient

    from causal_router.serving.api import create_app
    from tests.serving.tiny import TinyEncoder

    clean(postgres.uri)
    monkeypatch.setenv("CAUSAL_ROUTER_DECISIONS_URI", postgres.uri)
    settings.decisions_uri = None
    with TestClient(create_app(settings, encoder=TinyEncoder())) as client:
        d = client.post("/v1/route", json={"prompts": ["a", "b"], "lam": 5}).json()["decisions"]
        fb = {"decision_id": d[0]["decision_id"], "score": 1, "cost": 0}
        assert client.post("/v1/feedback", json=fb).status_code == 200
        assert client.post("/v1/feedback", json=fb).status_code == 409
    fresh = DecisionStore(postgres.uri)
    assert set(fresh.frame("decisions")["decision_id"]) == {x["decision_id"] for x in d}
    assert fresh.count("feedback") == 1 and fresh.schema_version() == SCHEMA_VERSION


def _process_writer(uri: str, k: int, n: int) -> None:
    store = DecisionStore(uri)
    for j in range(n):
        i = k * 10_000 + j
        store.add_decisions([decision(i)])
        store.add_feedback(f"d{i:05d}", 0.5, 0.1, None)


def test_several_processes_share_one_sqlite_log(tmp_path):
    """What `serve --workers N` does: each worker process writes decisions and feedback."""
    import multiprocessing

    uri = f"sqlite:///{tmp_path / 'decisions.db'}"
    DecisionStore(uri)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_process_writer, args=(uri, k, 40)) for k in range(1, 5)]
    [p.start() for p in procs]
    [p.join(60) for p in procs]
    assert [p.exitcode for p in procs] == [0] * 4
    store = DecisionStore(uri)
    assert store.count("decisions") == 160 and store.count("feedback") == 160
