"""DVC from Python: record stage outputs in ``dvc.lock`` and report the pipeline's status."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def _repo(root):
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    from dvc.repo import Repo

    return Repo(str(root))


def commit(root) -> bool:
    """``dvc commit`` of every stage (and ``data.dvc``): after a flow ran the stage functions
    itself, this leaves dvc.lock describing what it produced. False outside a DVC repository."""
    try:
        repo = _repo(root)
    except Exception as exc:  # not a DVC repo: nothing to record
        log.warning("no DVC repository at %s (%s): dvc.lock not updated", root, exc)
        return False
    with repo:
        repo.commit(None, force=True, allow_missing=True)
    return True


def status(root) -> dict:
    """``dvc status``: {} when every stage is up to date."""
    with _repo(root) as repo:
        return repo.status()
