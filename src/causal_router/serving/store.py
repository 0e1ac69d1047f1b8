"""The decision log: every decision and every feedback, append-only, durable before the response.

SQLAlchemy Core over one schema, two back-ends:

- embedded SQLite (default) at ``<project>/decisions/decisions.db``: WAL journal with
  ``synchronous=FULL``, so a committed row survives the process being killed;
- PostgreSQL when ``CAUSAL_ROUTER_DECISIONS_URI=postgresql+psycopg://USER@HOST:PORT/DB`` is set.

Tables (nothing is ever updated or deleted):

- ``schema_version``: one row per schema version applied (:data:`SCHEMA_VERSION`);
- ``decisions``: one row per routed prompt (the served policy's propensity, its whole probability
  vector as JSON, and the router version);
- ``feedback``: at most one row per decision (its primary key is the decision id);
- ``ingested``: one row per decision that ``causal-router ingest`` turned into a log row (or
  quarantined), so a second ingest adds nothing; ``ingest --retry-quarantined`` deletes the rows of
  quarantined decisions so that they are validated again;
- ``outcomes`` (version 3): at most one row per decision whose LLM call the gateway (or the LiteLLM
  callback) made: the model that answered, upstream status, tokens from its ``usage``, cost, latency
  (:mod:`causal_router.serving.gateway`). A decision the gateway made for a fallback carries
  ``fallback_of`` (the failed decision's id): no policy drew it.
- ``heartbeat``: one row rewritten by every health probe (:meth:`DecisionStore.check`): ``/healthz``
  proves that the log can be written.

Text: NUL (U+0000) and unpaired surrogates are refused in every text field on both back-ends
(:func:`text_problem`; PostgreSQL cannot store NUL, neither can encode a lone surrogate); every other
control character is stored as it is.

A SQLite log's identity (device, inode) is recorded when it is opened and checked around every write
and health probe: a log deleted or replaced while serving raises :class:`StoreUnavailable` (503) and
no decision is acknowledged into it. Once the log holds a decision, ``<log>.expected`` is written
beside it; opening a missing or empty log while that marker exists raises :class:`StoreUnavailable`
(delete the marker to start a new log on purpose).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .logfile import BadText, LogFile, StoreUnavailable, check_texts, first_line, text_problem
from .sqlite_insert import SQLiteInsert
from .tables import ADDED, SCHEMA_VERSION, decisions, feedback, heartbeat, ingested, metadata, outcomes, schema_version

__all__ = ["BadText", "DecisionStore", "DuplicateFeedback", "StoreUnavailable", "UnknownDecision", "text_problem"]

DECISIONS_ENV = "CAUSAL_ROUTER_DECISIONS_URI"
DEFAULT_PATH = Path("decisions") / "decisions.db"
class UnknownDecision(LookupError):
    """Feedback for a decision id the store never recorded."""


class DuplicateFeedback(ValueError):
    """A second feedback for the same decision."""


def now() -> datetime:
    return datetime.now(UTC)


def default_uri(root: str | Path | None = None) -> str:
    """``$CAUSAL_ROUTER_DECISIONS_URI``, else SQLite at ``<project>/decisions/decisions.db``, the project
    being ``root`` or the one found from the current folder (one resolution for every entry point:
    :func:`causal_router.settings.env.decisions_uri`)."""
    from ..settings.env import decisions_uri

    return decisions_uri(root)


def _sqlite_pragmas(dbapi_conn, _record):
    # SQLAlchemy's recipe: pysqlite's own BEGIN handling off, ours below (BEGIN IMMEDIATE)
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # fsync at every commit: acknowledged means on disk
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class DecisionStore:
    """Append-only decision log on a SQLAlchemy URI (see the module docstring).

    Parameters
    ----------
    uri : str or None
        SQLAlchemy URL (None: :func:`default_uri`). A ``sqlite:///`` file's folder is created.
    """

    def __init__(self, uri: str | None = None):
        self.uri = uri or default_uri()
        url = sa.engine.make_url(self.uri)
        self.is_sqlite = url.get_backend_name() == "sqlite"
        self.file = None
        if self.is_sqlite:
            if url.database and url.database != ":memory:":
                self.file = LogFile(Path(url.database).expanduser().absolute())
                self.file.path.parent.mkdir(parents=True, exist_ok=True)
                self.file.refuse_a_lost_log()
            self.engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            # take the write lock when a transaction starts: a read-then-write transaction (feedback)
            # would otherwise fail with SQLITE_BUSY when another process (--workers N) wrote meanwhile
            sa.event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
        # one SQLite writer at a time inside a process (SQLite serialises writers anyway;
        # this avoids busy waits between our own threads)
        self._write_lock = threading.Lock() if self.is_sqlite else None
        # SQLite through its driver: a lone decision's commit in half the time (see .sqlite_insert)
        self._insert_decisions, self._insert_outcomes = (
            (SQLiteInsert(self.engine, t, self._write_lock) if self.is_sqlite else partial(self._insert, t))
            for t in (decisions, outcomes))
        self.create()
        if self.file is not None:
            self.file.opened()
            if self.count("decisions"):
                self.file.write_marker()

    def check_identity(self) -> None:
        """Raise :class:`StoreUnavailable` if the SQLite file was deleted or replaced since it was opened."""
        if self.file is not None:
            self.file.check()

    def check(self) -> None:
        """Prove that the log can be written (a heartbeat write); :class:`StoreUnavailable` if not."""
        self.check_identity()
        with _unavailable("written", sa.exc.DBAPIError), self._writing(), self.engine.begin() as conn:
            conn.execute(heartbeat.delete())
            conn.execute(heartbeat.insert().values(id=1, at=now()))
        self.check_identity()

    def __repr__(self) -> str:
        return f"DecisionStore({self.engine.url.render_as_string(hide_password=True)!r})"

    def create(self) -> None:
        """Create missing tables and record the schema version; refuse a newer schema."""
        metadata.create_all(self.engine, checkfirst=True)
        self._add_columns()
        with self._writing(), self.engine.begin() as conn:
            found = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
            if found is not None and found > SCHEMA_VERSION:
                raise RuntimeError(f"{self!r} has schema version {found}; this causal-router knows up to "
                                   f"{SCHEMA_VERSION}: upgrade causal-router")
            if found is None or found < SCHEMA_VERSION:
                try:
                    with conn.begin_nested():
                        conn.execute(schema_version.insert().values(version=SCHEMA_VERSION, applied_at=now()))
                except IntegrityError:  # another process recorded it first
                    pass

    def _add_columns(self) -> None:
        """Upgrade an older database in place: add the columns it lacks (nullable; old rows keep NULL)."""
        for table, cols in ADDED.items():
            for name, sql_type in cols:
                if name in {c["name"] for c in sa.inspect(self.engine).get_columns(table)}:
                    continue
                try:
                    with self._writing(), self.engine.begin() as conn:
                        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")
                except sa.exc.DBAPIError:  # another process added it first
                    if name not in {c["name"] for c in sa.inspect(self.engine).get_columns(table)}:
                        raise

    def schema_version(self) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()

    def close(self) -> None:
        self.engine.dispose()

    def _writing(self):
        return self._write_lock if self._write_lock is not None else contextlib.nullcontext()

    # -- writes ----------------------------------------------------------------------------
    def add_decisions(self, rows: list[dict], wait: bool = True) -> None:
        """Insert decision rows (dicts keyed by the ``decisions`` columns) in one committed transaction.
        ``wait=False`` (SQLite): :class:`~.logfile.LogBusy` at once where another writer holds the log."""
        if not rows:
            return
        self.check_texts(rows)
        self.check_identity()
        with _unavailable("written", (sa.exc.OperationalError, sqlite3.OperationalError)):
            self._insert_decisions(rows, wait)
        self.check_identity()  # deleted meanwhile: the rows went into an unlinked file; acknowledge nothing
        if self.file is not None:
            self.file.write_marker()

    def _insert(self, table: sa.Table, rows: list[dict], wait: bool = True) -> None:
        with self._writing(), self.engine.begin() as conn:
            conn.execute(table.insert(), rows)

    check_texts = staticmethod(check_texts)

    def add_feedback(self, decision_id: str, score: float, cost: float | None, output_tokens: int | None,
                     cost_fn=None) -> dict:
        """Record feedback for one decision; returns the feedback row.

        ``cost_fn(decision_row, output_tokens) -> float`` computes the cost when ``cost`` is None.

        Raises
        ------
        UnknownDecision, DuplicateFeedback, ValueError (from ``cost_fn``), BadText, StoreUnavailable
        """
        why = text_problem(decision_id)
        if why:
            raise BadText(f"decision_id {why}")
        self.check_identity()
        with _unavailable("written"):
            row = self._add_feedback(decision_id, score, cost, output_tokens, cost_fn)
        self.check_identity()
        return row

    def _add_feedback(self, decision_id, score, cost, output_tokens, cost_fn) -> dict:
        with self._writing(), self.engine.begin() as conn:
            d = conn.execute(sa.select(decisions).where(decisions.c.decision_id == decision_id)).mappings().first()
            if d is None:
                raise UnknownDecision(decision_id)
            if conn.execute(sa.select(feedback.c.decision_id).where(feedback.c.decision_id == decision_id)).first():
                raise DuplicateFeedback(decision_id)
            if cost is None:
                cost = float(cost_fn(dict(d), output_tokens))
            row = {"decision_id": decision_id, "created_at": now(), "score": float(score), "cost": float(cost),
                   "output_tokens": None if output_tokens is None else int(output_tokens)}
            try:
                with conn.begin_nested():
                    conn.execute(feedback.insert().values(**row))
            except IntegrityError:  # a concurrent feedback for the same decision won the race
                raise DuplicateFeedback(decision_id) from None
        return row

    def add_outcome(self, row: dict) -> None:
        """Record the outcome of one decision's LLM call (keyed by the ``outcomes`` columns; ``created_at``
        defaults to now). A second outcome for the same decision raises :class:`DuplicateFeedback`."""
        row = {"created_at": now(), **row}
        try:
            with _unavailable("written", (sa.exc.OperationalError, sqlite3.OperationalError)):
                self._insert_outcomes([row])
        except (IntegrityError, sqlite3.IntegrityError):
            raise DuplicateFeedback(row["decision_id"]) from None

    def mark_ingested(self, outcomes: dict[str, tuple[str, str | None]]) -> None:
        """Record ``{decision_id: (outcome, reason)}`` as ingested (those recorded already are left as
        they are: a rerun after a crash marks the rest)."""
        if not outcomes:
            return
        at = now()
        ids = list(outcomes)
        with self._writing(), self.engine.begin() as conn:
            done = set()  # only these ids' marks are read: the table grows with every ingest
            for i in range(0, len(ids), 500):
                q = sa.select(ingested.c.decision_id).where(ingested.c.decision_id.in_(ids[i:i + 500]))
                done |= {r[0] for r in conn.execute(q)}
            rows = [{"decision_id": k, "ingested_at": at, "outcome": o, "reason": r}
                    for k, (o, r) in outcomes.items() if k not in done]
            if rows:
                conn.execute(ingested.insert(), rows)

    def quarantined(self):
        """Decisions an ingest quarantined (``decision_id``, ``ingested_at``, ``reason``), oldest first."""
        import pandas as pd

        q = (sa.select(ingested.c.decision_id, ingested.c.ingested_at, ingested.c.reason)
             .where(ingested.c.outcome == "quarantined").order_by(ingested.c.ingested_at, ingested.c.decision_id))
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(q).mappings().all(), columns=["decision_id", "ingested_at", "reason"])

    def release_quarantined(self) -> int:
        """Forget that the quarantined decisions were ingested, so that the next ingest validates them
        again (after a fix of the contract, the limits or the price sheet); returns how many."""
        with self._writing(), self.engine.begin() as conn:
            return conn.execute(ingested.delete().where(ingested.c.outcome == "quarantined")).rowcount

    # -- reads -----------------------------------------------------------------------------
    def counts_by_model(self) -> dict[str, int]:
        """Decisions logged per model (what exploration treats as how thin the logs are)."""
        with self.engine.connect() as conn:
            q = sa.select(decisions.c.model, sa.func.count()).group_by(decisions.c.model)
            return {m: int(n) for m, n in conn.execute(q)}

    def outcomes_by_model(self) -> dict[str, int]:
        """Ingested feedback rows per model (the outcomes that end a model's cold start). Read on the
        routing path: a log that cannot be read raises :class:`StoreUnavailable` (503), as a write does."""
        q = (sa.select(decisions.c.model, sa.func.count())
             .join(ingested, ingested.c.decision_id == decisions.c.decision_id)
             .where(ingested.c.outcome == "added").group_by(decisions.c.model))
        with _unavailable("read", sa.exc.DBAPIError), self.engine.connect() as conn:
            return {m: int(n) for m, n in conn.execute(q)}

    def first_pool(self) -> set[str] | None:
        """The pool the log began with: the models of the first exploring decision's propensities vector
        (None before one). A model outside it joined the pool later (the service's cold start)."""
        q = (sa.select(decisions.c.propensities).where(decisions.c.propensities.isnot(None), decisions.c.explore > 0)
             .order_by(decisions.c.created_at, decisions.c.decision_id).limit(1))
        try:
            with self.engine.connect() as conn:
                vec = conn.execute(q).scalar()
        except sa.exc.DBAPIError as err:
            raise StoreUnavailable(f"the decision log cannot be read: {first_line(err)}") from None
        import json

        return None if vec is None else set(json.loads(vec))

    def pending(self):
        """Decisions with feedback that were never ingested, oldest first, as a DataFrame."""
        import pandas as pd

        q = (sa.select(decisions, feedback.c.score, feedback.c.cost, feedback.c.output_tokens,
                       feedback.c.created_at.label("feedback_at"))
             .join(feedback, feedback.c.decision_id == decisions.c.decision_id)
             .outerjoin(ingested, ingested.c.decision_id == decisions.c.decision_id)
             .where(ingested.c.decision_id.is_(None))
             .order_by(decisions.c.created_at, decisions.c.decision_id))
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(q).mappings().all(),
                                columns=[c.name for c in decisions.columns]
                                + ["score", "cost", "output_tokens", "feedback_at"])

    def outcome(self, decision_id: str) -> dict | None:
        """The decision's recorded call outcome (``outcomes`` row) with ``ingested`` (how ingest took it,
        or None), or None when it has none."""
        q = (sa.select(outcomes, ingested.c.outcome.label("ingested"))
             .outerjoin(ingested, ingested.c.decision_id == outcomes.c.decision_id)
             .where(outcomes.c.decision_id == decision_id))
        with self.engine.connect() as conn:
            row = conn.execute(q).mappings().first()
        return None if row is None else dict(row)

    def outcomes_for(self, ids) -> dict[str, dict]:
        """``{decision_id: outcome row}`` for those of ``ids`` that have one."""
        ids, out = list(ids), {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                q = sa.select(outcomes).where(outcomes.c.decision_id.in_(ids[i:i + 500]))
                out |= {r["decision_id"]: dict(r) for r in conn.execute(q).mappings()}
        return out

    def awaiting_feedback(self, before):
        """Decisions with a successful call outcome recorded before ``before`` (a datetime), no feedback,
        not ingested and not a fallback, oldest first, as a DataFrame (the decision's columns, then the
        outcome's ``served_model``, ``out_input_tokens``, ``out_output_tokens``, ``out_cost``, ``outcome_at``)."""
        import pandas as pd

        extra = [outcomes.c.served_model, outcomes.c.input_tokens.label("out_input_tokens"),
                 outcomes.c.output_tokens.label("out_output_tokens"), outcomes.c.cost.label("out_cost"),
                 outcomes.c.created_at.label("outcome_at")]
        q = (sa.select(decisions, *extra)
             .join(outcomes, outcomes.c.decision_id == decisions.c.decision_id)
             .outerjoin(feedback, feedback.c.decision_id == decisions.c.decision_id)
             .outerjoin(ingested, ingested.c.decision_id == decisions.c.decision_id)
             .where(feedback.c.decision_id.is_(None), ingested.c.decision_id.is_(None),
                    decisions.c.fallback_of.is_(None), outcomes.c.status == "ok", outcomes.c.created_at < before)
             .order_by(decisions.c.created_at, decisions.c.decision_id))
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(q).mappings().all(),
                                columns=[c.name for c in decisions.columns] + [c.name for c in extra])

    def feedback_rates(self) -> dict[str, tuple[int, int]]:
        """``{model: (with feedback, answered)}`` over the decisions whose call succeeded (gateway or
        LiteLLM callback), fallbacks included."""
        q = (sa.select(decisions.c.model, sa.func.count(feedback.c.decision_id), sa.func.count())
             .join(outcomes, outcomes.c.decision_id == decisions.c.decision_id)
             .outerjoin(feedback, feedback.c.decision_id == decisions.c.decision_id)
             .where(outcomes.c.status == "ok").group_by(decisions.c.model))
        with self.engine.connect() as conn:
            return {m: (int(f), int(n)) for m, f, n in conn.execute(q)}

    def count(self, table: str) -> int:
        t = metadata.tables[table]
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar())

    def frame(self, table: str):
        """A whole table as a DataFrame (tests, audits)."""
        import pandas as pd

        t = metadata.tables[table]
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(sa.select(t)).mappings().all(), columns=[c.name for c in t.columns])


@contextlib.contextmanager
def _unavailable(verb: str, errors=sa.exc.OperationalError):
    """Database errors (locked for too long, read-only, disk full, gone) as :class:`StoreUnavailable` (503)."""
    try:
        yield
    except errors as err:
        raise StoreUnavailable(f"the decision log cannot be {verb}: {first_line(err)}") from None
