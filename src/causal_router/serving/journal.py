"""Ingest as a transaction: staged files, a journal (the commit point), then files into place, ``dvc add``
and the store's bookkeeping; a rerun after a crash finishes what the journal names.

Failpoints (:mod:`causal_router.failpoints`), in order: ``ingest.staged`` (new files written beside
their targets, no journal), ``ingest.committed`` (journal written), ``ingest.replaced:quarantine``,
``ingest.replaced:holdout.parquet``, ``ingest.replaced:train.parquet`` (after each move; the holdout
first, so that a kill in between never leaves a row in both),
``ingest.replaced``, ``ingest.dvc_added`` (``data.dvc`` updated), ``ingest.marked`` (the store marked the
decisions ingested; the journal is removed next).

The journal lies beside the data folder (``.<folder>.ingest-journal.json``), never inside it, so that
``dvc add`` never hashes it; staged files (``.<name>.ingest-tmp``) are all moved into place before
``dvc add`` runs, and those of an ingest killed before its commit point are deleted by the next one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..failpoints import failpoint

__all__ = ["IngestRefused", "Journal", "check_data_dir", "tracked_data_dirs"]

TMP_SUFFIX = ".ingest-tmp"


class IngestRefused(ValueError):
    """A data folder ingest must not write to (outside the project, or not the one ``data.dvc`` tracks)."""


def tracked_data_dirs(root) -> list[Path]:
    """The folders ``<root>/data.dvc`` tracks (empty without one)."""
    import yaml

    f = Path(root) / "data.dvc"
    if not f.is_file():
        return []
    try:
        outs = (yaml.safe_load(f.read_text()) or {}).get("outs") or []
    except (yaml.YAMLError, AttributeError):
        return []
    return [(Path(root) / o["path"]).resolve() for o in outs if isinstance(o, dict) and o.get("path")]


def check_data_dir(root, data_dir, force: bool = False) -> None:
    """Refuse (:class:`IngestRefused`) a data folder outside ``root`` or other than the one ``data.dvc``
    tracks, unless ``force``: the decisions would be marked ingested into logs nothing trains on."""
    if force:
        return
    root, d = Path(root).resolve(), Path(data_dir).resolve()
    if not d.is_relative_to(root):
        raise IngestRefused(f"the data folder {d} is outside the project {root}: ingest appends to the logs the "
                            "project trains on (pass --force to ingest elsewhere, without a DVC record)")
    tracked = tracked_data_dirs(root)
    if tracked and d not in tracked:
        names = ", ".join(os.path.relpath(t, root) for t in tracked)
        raise IngestRefused(f"the data folder {d} is not the one data.dvc tracks ({names}): decisions ingested there "
                            f"would never be trained on; use --data-dir {names} (or --force)")


class Journal:
    """The journal of one data folder's ingest."""

    def __init__(self, data_dir):
        self.data_dir = Path(data_dir)
        self.path = self.data_dir.parent / f".{self.data_dir.name}.ingest-journal.json"
        self.files: list[tuple[str, str]] = []

    def pending(self) -> bool:
        return self.path.is_file()

    def clean(self) -> None:
        """Delete staged files of an ingest killed before its commit point."""
        if self.data_dir.is_dir():
            for f in self.data_dir.rglob(f"*{TMP_SUFFIX}"):
                f.unlink()

    def stage(self, df, target: Path) -> None:
        """Write ``df`` beside ``target`` (moved into place once committed)."""
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}{TMP_SUFFIX}")
        df.to_parquet(tmp, index=False)
        _fsync(tmp)
        self.files.append((os.path.relpath(tmp, self.data_dir), os.path.relpath(target, self.data_dir)))

    def commit(self, outcomes: dict, dvc: bool) -> None:
        """Write the journal atomically: from here on the ingest happens (a rerun finishes it)."""
        failpoint("ingest.staged")
        doc = {"files": self.files, "dvc": bool(dvc), "outcomes": {k: list(v) for k, v in outcomes.items()}}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(doc))
        _fsync(tmp)
        os.replace(tmp, self.path)
        failpoint("ingest.committed")

    def finish(self, store, root, dvc: bool, record_data_version) -> str | None:
        """Do the journal's work (each step idempotent), then remove it; returns the data version
        (``record_data_version(root, data_dir)``: :func:`causal_router.serving.ingest.record_data_version`)."""
        if not self.path.is_file():
            return None
        doc = json.loads(self.path.read_text())
        for tmp, final in doc["files"]:
            tmp, final = self.data_dir / tmp, self.data_dir / final
            if tmp.exists():
                os.replace(tmp, final)
            failpoint(f"ingest.replaced:{'quarantine' if final.parent.name == 'quarantine' else final.name}")
        failpoint("ingest.replaced")
        version = None
        if doc["dvc"] and dvc:
            version = record_data_version(root, self.data_dir)
            failpoint("ingest.dvc_added")
        store.mark_ingested({k: tuple(v) for k, v in doc["outcomes"].items()})
        failpoint("ingest.marked")
        self.path.unlink()
        return version


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
