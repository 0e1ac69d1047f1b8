"""Rows appended to a SQLite table through the driver's own connection, in one ``BEGIN IMMEDIATE``
transaction: SQLAlchemy Core's per-statement work (compiling, the ``begin`` event, the result
object) cost about 0.45 ms of a lone decision's commit, against 0.45 ms for the whole durable commit
(the fsync included) done this way (``benchmarks/serve_steps.py``).

The values go through the column types' own bind processors (SQLAlchemy's, for the engine's
dialect), so the stored text of a datetime or float is the one SQLAlchemy writes and reads back.
"""

from __future__ import annotations

import sqlite3
import threading

import sqlalchemy as sa

from .logfile import LogBusy


class SQLiteInsert:
    """``insert(rows, wait=True)``: rows (dicts keyed by ``table``'s column names; a missing key is NULL)
    committed in one transaction on a connection of ``engine``'s pool (its ``connect`` pragmas hold), under
    ``lock`` (this process's writers, one at a time).

    ``wait=False`` raises :class:`~.logfile.LogBusy` at once, writing nothing, where ``lock`` or the file's
    write lock (another process: ``serve --workers``, ``ingest``) is held: a caller on an event loop then
    commits from a thread instead of stalling the loop for the busy timeout. Other failures raise the
    driver's :class:`sqlite3.Error` subclasses, the transaction rolled back first.
    """

    def __init__(self, engine: sa.Engine, table: sa.Table, lock: threading.Lock | None = None):
        dialect = engine.dialect
        self.engine = engine
        self.lock = lock or threading.Lock()
        self.columns = [c.name for c in table.columns]
        self.sql = (f"INSERT INTO {table.name} ({', '.join(self.columns)}) "
                    f"VALUES ({', '.join('?' * len(self.columns))})")
        self.processors = [c.type.dialect_impl(dialect).bind_processor(dialect) for c in table.columns]

    def params(self, rows: list[dict]) -> list[tuple]:
        pairs = list(zip(self.columns, self.processors))
        return [tuple(r.get(c) if f is None else f(r.get(c)) for c, f in pairs) for r in rows]

    def __call__(self, rows: list[dict], wait: bool = True) -> None:
        params = self.params(rows)
        if not self.lock.acquire(blocking=wait):
            raise LogBusy("another thread is writing the decision log")
        try:
            pooled = self.engine.raw_connection()
            try:
                self._commit(pooled.driver_connection, params, wait)
            finally:
                pooled.close()
        finally:
            self.lock.release()

    def _commit(self, conn: sqlite3.Connection, params: list[tuple], wait: bool) -> None:
        timeout = None
        if not wait:  # the busy timeout off for this transaction's BEGIN only
            timeout = conn.execute("PRAGMA busy_timeout").fetchone()[0]
            conn.execute("PRAGMA busy_timeout=0")
        try:
            conn.execute("BEGIN IMMEDIATE")  # the write lock now, as the engine's transactions take it
        except sqlite3.OperationalError as err:
            if not wait and err.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise LogBusy("another process is writing the decision log") from None
            raise
        finally:
            if timeout is not None:
                conn.execute(f"PRAGMA busy_timeout={int(timeout)}")
        try:
            conn.executemany(self.sql, params)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
