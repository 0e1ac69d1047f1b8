"""SQLite decision rows written through the driver (:mod:`causal_router.serving.sqlite_insert`) are the rows
SQLAlchemy writes, byte for byte in the file's text, and a failed batch leaves nothing behind."""

import sqlite3
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from causal_router.serving.sqlite_insert import SQLiteInsert
from causal_router.serving.store import DecisionStore
from causal_router.serving.tables import decisions


def _rows(prefix: str) -> list[dict]:
    at = datetime(2026, 12, 7, 19, 5, 3, 123456, tzinfo=UTC)
    return [{"decision_id": f"{prefix}{i}", "created_at": at, "request_id": "r", "prompt": f"p\u00e9 {i}\n\t",
             "model": "m", "propensity": 0.1 + i / 3, "lam": 1e-9, "explore": 0.05, "router_name": "x",
             "router_version": "1", "input_tokens": None if i else 12.5, "propensities": '{"m": 1.0}'}
            for i in range(3)]


def _raw(path) -> list[tuple]:
    with sqlite3.connect(path) as con:
        return con.execute("SELECT * FROM decisions ORDER BY decision_id").fetchall()


def test_rows_are_stored_as_sqlalchemy_stores_them(tmp_path):
    fast, slow = DecisionStore(f"sqlite:///{tmp_path}/a.db"), DecisionStore(f"sqlite:///{tmp_path}/b.db")
    fast.add_decisions(_rows("d"))
    with slow.engine.begin() as conn:
        conn.execute(decisions.insert(), _rows("d"))
    assert _raw(tmp_path / "a.db") == _raw(tmp_path / "b.db")
    assert fast.frame("decisions").equals(slow.frame("decisions"))
    assert fast.frame("decisions")["fallback_of"].isna().all()  # a key the rows lack is NULL


def test_a_failed_batch_is_rolled_back_and_the_log_stays_writable(tmp_path):
    store = DecisionStore(f"sqlite:///{tmp_path}/a.db")
    insert = SQLiteInsert(store.engine, decisions)
    insert(_rows("a"))
    with pytest.raises(sqlite3.IntegrityError):
        insert(_rows("b") + [_rows("a")[0]])  # the last row's id exists: the whole batch fails
    assert store.count("decisions") == 3
    store.add_decisions(_rows("c"))
    assert store.count("decisions") == 6
    with store.engine.connect() as conn:  # no transaction left open on the pooled connection
        assert conn.execute(sa.text("SELECT count(*) FROM decisions")).scalar() == 6


def test_a_commit_that_may_not_wait_is_refused_while_another_process_writes(tmp_path):
    from causal_router.serving.logfile import LogBusy

    store = DecisionStore(f"sqlite:///{tmp_path}/a.db")
    other = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer (serve --workers, ingest) holds the write lock
    try:
        with pytest.raises(LogBusy):
            store.add_decisions(_rows("a"), wait=False)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.count("decisions") == 0
    store.add_decisions(_rows("a"), wait=False)  # the lock free: written at once
    assert store.count("decisions") == 3
    with store._write_lock:  # a thread of this process writing
        with pytest.raises(LogBusy):
            store.add_decisions(_rows("b"), wait=False)
    raw = store.engine.raw_connection()
    try:  # the busy timeout is back for the connection's next writers
        assert raw.driver_connection.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
    finally:
        raw.close()


def test_outcomes_are_stored_as_sqlalchemy_stores_them_and_a_second_one_is_refused(tmp_path):
    from causal_router.serving.store import DuplicateFeedback
    from causal_router.serving.tables import outcomes

    fast, slow = DecisionStore(f"sqlite:///{tmp_path}/a.db"), DecisionStore(f"sqlite:///{tmp_path}/b.db")
    at = datetime(2026, 12, 7, 20, 1, 2, 345678, tzinfo=UTC)
    row = {"decision_id": "d0", "created_at": at, "source": "gateway", "served_model": "m-2026", "status": "ok",
           "upstream_status": 200, "input_tokens": 12, "output_tokens": 7, "cost": 1.25e-5, "latency_ms": 51.5}
    for store in (fast, slow):
        store.add_decisions(_rows("d"))
    fast.add_outcome(row)
    with slow.engine.begin() as conn:
        conn.execute(outcomes.insert().values(**row))
    with sqlite3.connect(tmp_path / "a.db") as a, sqlite3.connect(tmp_path / "b.db") as b:
        assert a.execute("SELECT * FROM outcomes").fetchall() == b.execute("SELECT * FROM outcomes").fetchall()
    with pytest.raises(DuplicateFeedback):
        fast.add_outcome({**row, "status": "error"})
    assert fast.frame("outcomes")["status"].tolist() == ["ok"]
