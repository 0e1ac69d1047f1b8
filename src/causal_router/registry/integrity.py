"""The tracking store's integrity: its schema, the champions it must still hold, one promotion at a time.

MLflow silently creates a new, empty store when its database is emptied, deleted or replaced, and
reads some damaged databases as empty ones; a challenger would then become "the first champion"
without any evidence. Three guards stop that:

- :func:`check_schema`, before MLflow opens the store: a SQLite file must be an SQLite database
  (header, ``PRAGMA quick_check``) holding MLflow's schema (``alembic_version`` and the run and
  registry tables). A missing file, a 0-byte file or a database without tables is *fresh*; anything
  else that fails is a :class:`StoreDamagedError`. Other SQLAlchemy databases (PostgreSQL, MySQL)
  get the same table check when their driver is installed; a tracking server (``http(s)://``) owns
  its database, so only the next guard applies to it.
- The **expected-state marker**: whenever ``champion`` moves (promotion, rollback), the registered
  models holding a champion and their versions are written to a JSON file. For a SQLite store it
  lies beside the database (``mlruns/mlflow.db.expected.json``); for any other store under
  ``$CAUSAL_ROUTER_STATE_DIR``, else ``<project>/mlruns/expected/``, named by a hash of the tracking
  URI (its password left out), so each machine keeps what it saw of a shared server. A store that
  is fresh while the marker lists champions, or that lost a champion the marker lists, is a
  :class:`StoreDamagedError` naming the models, the versions and the marker, never a fresh start.
  A store without a marker that already holds champions (made before the marker existed) gets one.
  Removing models on purpose: delete the marker to accept the store as it is.
- :func:`promotion_lock`: a file lock (next to the marker) that promotions and rollbacks hold, so
  two at once leave exactly one champion per model, each decided against the champion of the day.

:func:`preflight` runs the first two before MLflow opens the store (every :func:`configure
<causal_router.registry.tracking.configure>` does); :func:`verify` repeats both on an open store
(promotion does, under the lock, before it moves an alias).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlparse, urlunparse

from ..errors import StoreDamagedError
from ..settings.env import MLRUNS, find_project_root, sqlite_path
from .names import CHAMPION

log = logging.getLogger(__name__)

__all__ = ["StoreDamagedError", "check_schema", "check_expected", "current_champions", "lock_path", "marker_path",
           "preflight", "promotion_lock", "read_expected", "record_expected", "verify"]

STATE_DIR_ENV = "CAUSAL_ROUTER_STATE_DIR"
MARKER_SUFFIX = ".expected.json"
LOCK_SUFFIX = ".promote.lock"
SQLITE_HEADER = b"SQLite format 3\x00"
#: Tables every MLflow database has (runs and the model registry); alembic_version holds its schema version.
MLFLOW_TABLES = ("alembic_version", "experiments", "runs", "registered_models", "model_versions",
                 "registered_model_aliases")
FRESH, OK, REMOTE = "fresh", "ok", "remote"


def _public(uri: str) -> str:
    """The URI without its password (safe to print and to hash)."""
    parts = urlparse(uri)
    if parts.password:
        host = parts.hostname or ""
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunparse(parts._replace(netloc=netloc))
    return uri


def _sqlite_path(uri: str) -> Path | None:
    db = sqlite_path(uri)
    if db is not None and str(db).startswith("//"):  # sqlite:////abs/path parses as //abs/path
        db = Path("/" + str(db).lstrip("/"))
    return db


# -- schema ----------------------------------------------------------------------------------
def check_schema(uri: str) -> str:
    """``"fresh"`` (no database yet, 0 bytes, or no tables), ``"ok"`` (MLflow's schema) or
    ``"remote"`` (a tracking server, or a database whose driver is not installed: not checked here).

    Raises
    ------
    StoreDamagedError
        Not an SQLite database, failing its integrity check, or tables that are not MLflow's.
    """
    db = _sqlite_path(uri)
    if db is not None:
        return _check_sqlite(db)
    scheme = urlparse(uri).scheme.split("+")[0]
    if scheme in ("postgresql", "mysql", "mssql"):
        return _check_sqlalchemy(uri)
    return REMOTE


def _damaged(where, what: str) -> StoreDamagedError:
    return StoreDamagedError(
        f"the MLflow tracking store {where} {what}. It is not used as an empty store (that would let a challenger "
        "become champion without evidence): restore the file from a backup, or move it away to start a new store "
        "on purpose.")


def _check_sqlite(db: Path) -> str:
    if not db.exists():
        return FRESH
    if db.is_dir():
        raise _damaged(db, "is a directory, not an SQLite database")
    size = db.stat().st_size
    if size == 0:
        return FRESH
    with open(db, "rb") as fh:
        header = fh.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise _damaged(db, f"is not an SQLite database ({size} bytes, header {header[:16]!r})")
    try:
        con = sqlite3.connect(f"file:{quote(str(db.absolute()))}?mode=ro", uri=True, timeout=60)
        try:
            check = [r[0] for r in con.execute("PRAGMA quick_check").fetchall()]
            if check != ["ok"]:
                raise _damaged(db, f"fails SQLite's integrity check: {'; '.join(map(str, check[:3]))}")
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables:
                return FRESH
            missing = [t for t in MLFLOW_TABLES if t not in tables]
            if missing:
                raise _damaged(db, f"is not an MLflow database (no table {', '.join(missing)}; "
                                   f"it has {', '.join(sorted(tables)[:5])})")
            if not con.execute("SELECT version_num FROM alembic_version").fetchall():
                raise _damaged(db, "has no schema version (alembic_version is empty)")
        finally:
            con.close()
    except sqlite3.DatabaseError as err:  # "file is not a database", "database disk image is malformed"
        raise _damaged(db, f"cannot be read as an SQLite database ({err})") from None
    return OK


def _check_sqlalchemy(uri: str) -> str:
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(uri)
    except Exception as err:  # a driver MLflow would need as well: it reports the problem itself
        log.debug("schema of %s not checked: %s", _public(uri), err)
        return REMOTE
    try:
        tables = set(sa.inspect(engine).get_table_names())
    except Exception as err:
        raise _damaged(_public(uri), f"cannot be read ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    finally:
        engine.dispose()
    if not tables:
        return FRESH
    missing = [t for t in MLFLOW_TABLES if t not in tables]
    if missing:
        raise _damaged(_public(uri), f"is not an MLflow database (no table {', '.join(missing)})")
    return OK


# -- expected state --------------------------------------------------------------------------
def marker_path(uri: str) -> Path:
    """Where the expected state of the store at ``uri`` is kept (see the module docstring)."""
    db = _sqlite_path(uri)
    if db is not None:
        return db.with_name(db.name + MARKER_SUFFIX)
    base = os.environ.get(STATE_DIR_ENV)
    if base:
        folder = Path(base).expanduser()
    else:
        root = find_project_root()
        folder = (root / MLRUNS / "expected") if root else Path.home() / ".cache" / "causal-router" / "expected"
    return folder / (hashlib.sha256(_public(uri).encode()).hexdigest()[:16] + MARKER_SUFFIX)


def lock_path(uri: str) -> Path:
    """The promotion lock of the store at ``uri`` (beside its marker)."""
    marker = marker_path(uri)
    return marker.with_name(marker.name[: -len(MARKER_SUFFIX)] + LOCK_SUFFIX)


def read_expected(uri: str) -> dict[str, str]:
    """The champions the store at ``uri`` is expected to hold, ``{model name: version}`` ({} without a marker).

    Raises
    ------
    StoreDamagedError
        The marker exists but is not the JSON this module writes.
    """
    path = marker_path(uri)
    try:
        doc = json.loads(path.read_text())
        champions = doc["champions"]
        if not isinstance(champions, dict):
            raise TypeError("champions is not a mapping")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise StoreDamagedError(f"the expected-state marker {path} of the MLflow store cannot be read ({err}): "
                                "delete it to accept the store as it is now") from None
    return {str(k): str(v) for k, v in champions.items()}


def current_champions(client) -> dict[str, str]:
    """``{model name: champion version}`` over every registered model of the store."""
    out, token = {}, None
    while True:
        page = client.search_registered_models(max_results=1000, page_token=token)
        for m in page:
            if CHAMPION in (m.aliases or {}):
                out[m.name] = str(m.aliases[CHAMPION])
        token = page.token
        if not token:
            return out


def record_expected(uri: str, client) -> dict[str, str]:
    """Write the store's current champions to its marker (atomically); returns them."""
    champions = current_champions(client)
    path = marker_path(uri)
    doc = {"uri": _public(uri), "updated": datetime.now(UTC).isoformat(timespec="seconds"),
           "champions": dict(sorted(champions.items()))}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as err:  # a read-only store folder: the guard is weaker, the store still works
        log.warning("could not write the expected-state marker %s: %s", path, err)
    return champions


def _lost(uri: str, expected: dict, what: str) -> StoreDamagedError:
    listed = ", ".join(f"{n} v{v}" for n, v in sorted(expected.items()))
    return StoreDamagedError(
        f"the MLflow tracking store {_public(uri)} {what}, but it held champions ({listed}, recorded in "
        f"{marker_path(uri)}): it was emptied, replaced or damaged. Restore it from a backup; nothing is promoted "
        "or registered into it. If the models were removed on purpose, delete that marker file to accept the "
        "store as it is now.")


def preflight(uri: str) -> dict[str, str]:
    """Before MLflow opens the store: :func:`check_schema`, and a fresh store while the marker lists
    champions is damage. Returns the expected champions."""
    state = check_schema(uri)
    expected = read_expected(uri)
    if state == FRESH and expected:
        db = _sqlite_path(uri)
        what = ("is missing" if db is not None and not db.exists() else
                "is an empty file (0 bytes)" if db is not None and db.stat().st_size == 0 else "holds no tables")
        raise _lost(uri, expected, what)
    return expected


def check_expected(uri: str, client, expected: dict[str, str] | None = None) -> dict[str, str]:
    """Every champion of the marker must still be there (a champion at another version is logged).
    Writes a marker for a store that has champions but none yet. Returns the current champions."""
    expected = read_expected(uri) if expected is None else expected
    current = current_champions(client)
    lost = {n: v for n, v in expected.items() if n not in current}
    if lost:
        names = ", ".join(sorted(lost))
        raise _lost(uri, expected, f"has no champion for {names}")
    for n, v in expected.items():
        if current[n] != v:
            log.warning("%s: champion is v%s, the expected-state marker says v%s (moved outside promote/rollback?)",
                        n, current[n], v)
    if not expected and current:
        record_expected(uri, client)
    return current


def verify(uri: str, client) -> dict[str, str]:
    """:func:`preflight` and :func:`check_expected` on an open store; returns the current champions."""
    return check_expected(uri, client, preflight(uri))


def promotion_lock(uri: str):
    """A file lock held while ``champion`` moves in the store at ``uri`` (waits for the holder)."""
    from filelock import FileLock

    path = lock_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path))
