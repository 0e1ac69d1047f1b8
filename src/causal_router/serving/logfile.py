"""The decision log's file on disk (SQLite): its identity while serving and the ``expected`` marker,
and the one text rule of both back-ends. See :mod:`causal_router.serving.store`."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

MARKER_SUFFIX = ".expected"


class StoreUnavailable(RuntimeError):
    """The decision log cannot be written (unwritable, deleted, replaced, or missing where one existed): 503."""


def first_line(err: Exception) -> str:
    """A database error's first line (the driver's own message where SQLAlchemy wrapped it), at most 300 characters."""
    text = str(getattr(err, "orig", None) or err).strip()
    return (text.splitlines() or ["unknown error"])[0][:300]


class LogBusy(RuntimeError):
    """Another writer holds the SQLite log's write lock, and the caller asked not to wait for it."""


class BadText(ValueError):
    """A text value the log refuses (NUL, unpaired surrogate): 422."""


def text_problem(value) -> str | None:
    """Why ``value`` cannot be stored as text (the one rule of both back-ends), or None."""
    if not isinstance(value, str):
        return None
    if "\x00" in value:
        return "contains a NUL character (U+0000), which the decision log does not store"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate (not valid Unicode text)"
    return None


class LogFile:
    """A SQLite decision log's path, identity (device, inode) and ``<log>.expected`` marker."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.marker = self.path.with_name(self.path.name + MARKER_SUFFIX)
        self.identity = None
        self.marked = False  # the marker is known to exist: no stat per commit

    def _stat(self):
        st = os.stat(self.path)
        return st.st_dev, st.st_ino

    def opened(self) -> None:
        self.identity = self._stat()

    def refuse_a_lost_log(self) -> None:
        """Before opening: a missing or empty log whose marker says it held decisions is an error."""
        if not self.marker.is_file():
            return
        empty = not self.path.is_file() or self.path.stat().st_size == 0
        if not empty:
            import sqlite3

            try:
                with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as conn:
                    empty = conn.execute("SELECT 1 FROM decisions LIMIT 1").fetchone() is None
            except sqlite3.Error:
                empty = True
        if empty:
            raise StoreUnavailable(
                f"the decision log {self.path} is missing or empty, but {self.marker} says it held decisions: "
                "restore it (their feedback would be refused), or delete the marker to start a new log on purpose")

    def write_marker(self) -> None:
        if self.marked:
            return
        if not self.marker.is_file():
            # a temporary name per writer: concurrent first writes each replace their own file, never another's
            tmp = self.marker.with_name(f"{self.marker.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps({"log": str(self.path), "since": datetime.now(UTC).isoformat()}) + "\n")
            os.replace(tmp, self.marker)
        self.marked = True

    def check(self) -> None:
        """:class:`StoreUnavailable` if the file was deleted or replaced since :meth:`opened`."""
        if self.identity is None:
            return
        try:
            same = self._stat() == self.identity
        except FileNotFoundError:
            same = False
        if not same:
            raise StoreUnavailable(f"the decision log {self.path} was deleted or replaced while in use: nothing is "
                                   "recorded into it; restore it (or move it back) and restart the service")


def check_texts(rows: list[dict]) -> None:
    """:class:`BadText` for a decision row whose id, prompt or request id the log cannot store."""
    for r in rows:
        for key in ("decision_id", "prompt", "request_id"):
            why = text_problem(r.get(key))
            if why:
                raise BadText(f"{'prompt' if key == 'prompt' else key} {why}")
