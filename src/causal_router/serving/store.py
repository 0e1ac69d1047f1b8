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
  quarantined), so a second ingest adds nothing;
- ``outcomes`` (version 3): at most one row per decision whose LLM call the gateway (or the LiteLLM
  callback) made: the model that answered, upstream status, tokens from its ``usage``, cost, latency
  (:mod:`causal_router.serving.gateway`). A decision the gateway made for a fallback carries
  ``fallback_of`` (the failed decision's id): no policy drew it.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

DECISIONS_ENV = "CAUSAL_ROUTER_DECISIONS_URI"
DEFAULT_PATH = Path("decisions") / "decisions.db"
#: Bumped whenever a table changes; :meth:`DecisionStore.create` refuses a newer database.
SCHEMA_VERSION = 3
#: Columns added after version 1, created in place on an older database: ``{table: [(name, SQL type)]}``
#: (new tables, such as version 3's ``outcomes``, are created by ``create_all``).
_ADDED = {"decisions": [("propensities", "TEXT"),  # version 2
                        ("fallback_of", "VARCHAR(64)")]}  # version 3

metadata = sa.MetaData()
schema_version = sa.Table(
    "schema_version", metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)
decisions = sa.Table(
    "decisions", metadata,
    sa.Column("decision_id", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("prompt", sa.Text, nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("propensity", sa.Float, nullable=False),
    sa.Column("lam", sa.Float, nullable=False),
    sa.Column("explore", sa.Float, nullable=False),
    sa.Column("router_name", sa.String(200), nullable=False),
    sa.Column("router_version", sa.String(64), nullable=False),
    sa.Column("input_tokens", sa.Float, nullable=True),
    sa.Column("propensities", sa.Text, nullable=True),  # JSON {model: probability}; NULL before version 2
    sa.Column("fallback_of", sa.String(64), nullable=True),  # a gateway fallback: the failed decision's id
)
feedback = sa.Table(
    "feedback", metadata,
    sa.Column("decision_id", sa.String(64), sa.ForeignKey("decisions.decision_id"), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("cost", sa.Float, nullable=False),
    sa.Column("output_tokens", sa.Integer, nullable=True),
)
ingested = sa.Table(
    "ingested", metadata,
    sa.Column("decision_id", sa.String(64), sa.ForeignKey("decisions.decision_id"), primary_key=True),
    sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),  # "added" or "quarantined"
    sa.Column("reason", sa.Text, nullable=True),
)


outcomes = sa.Table(
    "outcomes", metadata,
    sa.Column("decision_id", sa.String(64), sa.ForeignKey("decisions.decision_id"), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("source", sa.String(32), nullable=False),  # "gateway" or "litellm" (the CustomLogger callback)
    sa.Column("served_model", sa.String(200), nullable=True),  # the upstream's own model name
    sa.Column("status", sa.String(16), nullable=False),  # "ok", "error" or "timeout"
    sa.Column("upstream_status", sa.Integer, nullable=True),  # HTTP status (None: no response)
    sa.Column("input_tokens", sa.Integer, nullable=True),
    sa.Column("output_tokens", sa.Integer, nullable=True),
    sa.Column("cost", sa.Float, nullable=True),  # USD: tokens x the gateway file's prices
    sa.Column("latency_ms", sa.Float, nullable=True),
    sa.Column("error", sa.Text, nullable=True),  # the error's type and status, never a key
)


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
        if self.is_sqlite:
            if url.database and url.database != ":memory:":
                Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
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
        self.create()

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
        for table, cols in _ADDED.items():
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
        return self._write_lock if self._write_lock is not None else _NullLock()

    # -- writes ----------------------------------------------------------------------------
    def add_decisions(self, rows: list[dict]) -> None:
        """Insert decision rows (dicts keyed by the ``decisions`` columns) in one committed transaction."""
        if not rows:
            return
        with self._writing(), self.engine.begin() as conn:
            conn.execute(decisions.insert(), rows)

    def add_feedback(self, decision_id: str, score: float, cost: float | None, output_tokens: int | None,
                     cost_fn=None) -> dict:
        """Record feedback for one decision; returns the feedback row.

        ``cost_fn(decision_row, output_tokens) -> float`` computes the cost when ``cost`` is None.

        Raises
        ------
        UnknownDecision, DuplicateFeedback, ValueError (from ``cost_fn``)
        """
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
            with self._writing(), self.engine.begin() as conn:
                conn.execute(outcomes.insert().values(**row))
        except IntegrityError:
            raise DuplicateFeedback(row["decision_id"]) from None

    def mark_ingested(self, outcomes: dict[str, tuple[str, str | None]]) -> None:
        """Record ``{decision_id: (outcome, reason)}`` as ingested."""
        if not outcomes:
            return
        at = now()
        rows = [{"decision_id": k, "ingested_at": at, "outcome": o, "reason": r} for k, (o, r) in outcomes.items()]
        with self._writing(), self.engine.begin() as conn:
            conn.execute(ingested.insert(), rows)

    # -- reads -----------------------------------------------------------------------------
    def counts_by_model(self) -> dict[str, int]:
        """Decisions logged per model (what exploration treats as how thin the logs are)."""
        with self.engine.connect() as conn:
            q = sa.select(decisions.c.model, sa.func.count()).group_by(decisions.c.model)
            return {m: int(n) for m, n in conn.execute(q)}

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


class _NullLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
