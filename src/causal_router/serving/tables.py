"""The decision log's tables (SQLAlchemy Core, one schema for SQLite and PostgreSQL) and its schema
version; :mod:`.store` reads and writes them."""

from __future__ import annotations

import sqlalchemy as sa

#: Bumped whenever a table changes; :meth:`DecisionStore.create` refuses a newer database.
SCHEMA_VERSION = 3
#: Columns added after version 1, created in place on an older database: ``{table: [(name, SQL type)]}``
#: (new tables, such as version 3's ``outcomes``, are created by ``create_all``).
ADDED = {"decisions": [("propensities", "TEXT"),  # version 2
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


heartbeat = sa.Table(
    "heartbeat", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)
