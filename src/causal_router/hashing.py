"""Content hashes, computed as DVC 3 computes them ("md5"), for cache keys and lineage.

A file's hash is the md5 of its bytes; a folder's is the md5 of
``json.dumps(sorted([{"md5": <file md5>, "relpath": <posix path>}, ...] by relpath), sort_keys=True)``
followed by ``.dir``, over every file below it except ``.git``, ``.hg`` and ``.dvc`` folders and the
byte-code caches that ``.dvcignore`` leaves out. So a hash read from a ``.dvc`` file or ``dvc.lock``
and one computed here agree.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

_IGNORED_DIRS = {".git", ".hg", ".dvc", "__pycache__"}
_IGNORED_SUFFIXES = (".pyc",)
_CHUNK = 1 << 20


def _file_digest(path, h) -> str:
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def file_md5(path) -> str:
    """md5 hex digest of a file's bytes (DVC 3's file hash)."""
    return _file_digest(path, hashlib.md5(usedforsecurity=False))


def file_sha256(path) -> str:
    """sha256 hex digest of a file's bytes (router payloads, the static encoder's files)."""
    return _file_digest(path, hashlib.sha256())


def dir_md5(path) -> str:
    """DVC-style folder hash ``<md5>.dir`` (see the module docstring)."""
    root = Path(path)
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _IGNORED_DIRS)
        for f in filenames:
            if f.endswith(_IGNORED_SUFFIXES):
                continue
            p = Path(dirpath) / f
            entries.append({"md5": file_md5(p), "relpath": p.relative_to(root).as_posix()})
    entries.sort(key=lambda e: e["relpath"])
    digest = hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8"), usedforsecurity=False).hexdigest()
    return digest + ".dir"


def hash_path(path) -> str | None:
    """DVC hash of a file or folder; None when it does not exist."""
    p = Path(path)
    if p.is_file():
        return file_md5(p)
    if p.is_dir():
        return dir_md5(p)
    return None


def digest(*paths) -> str:
    """One md5 over the DVC hashes of several files or folders (in order; a missing one counts as
    missing): a cache key of a task's input files."""
    h = hashlib.md5(usedforsecurity=False)
    for p in paths:
        h.update(f"{hash_path(p)}\x00".encode())
    return h.hexdigest()
