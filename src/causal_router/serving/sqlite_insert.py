"""Rows appended to a SQLite table through the driver's own connection, in one ``BEGIN IMMEDIATE``
transaction: SQLAlchemy Core's per-statement work (compiling, the ``begin`` event, the result
object) cost about 0.45 ms of a lone decision's commit, against 0.45 ms for the whole durable commit
(the fsync included) done this way (``benchmarks/serve_steps.py``).

The values go through the column types' own bind processors (SQLAlchemy's, for the engine's
dialect), so the stored text of a datetime or float is the one SQLAlchemy writes and reads back.
"""

from __future__ import annotations

import sqlalchemy as sa


class SQLiteInsert:
    """``insert(rows)``: rows (dicts keyed by ``table``'s column names; a missing key is NULL) committed in
    one transaction on a connection of ``engine``'s pool (its ``connect`` pragmas hold).

    Raises the driver's :class:`sqlite3.Error` subclasses; the transaction is rolled back first.
    """

    def __init__(self, engine: sa.Engine, table: sa.Table):
        dialect = engine.dialect
        self.engine = engine
        self.columns = [c.name for c in table.columns]
        self.sql = (f"INSERT INTO {table.name} ({', '.join(self.columns)}) "
                    f"VALUES ({', '.join('?' * len(self.columns))})")
        self.processors = [c.type.dialect_impl(dialect).bind_processor(dialect) for c in table.columns]

    def params(self, rows: list[dict]) -> list[tuple]:
        pairs = list(zip(self.columns, self.processors))
        return [tuple(r.get(c) if f is None else f(r.get(c)) for c, f in pairs) for r in rows]

    def __call__(self, rows: list[dict]) -> None:
        params = self.params(rows)
        pooled = self.engine.raw_connection()
        try:
            conn = pooled.driver_connection
            conn.execute("BEGIN IMMEDIATE")  # the write lock now, as the engine's transactions take it
            try:
                conn.executemany(self.sql, params)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        finally:
            pooled.close()
