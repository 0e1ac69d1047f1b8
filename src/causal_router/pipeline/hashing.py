"""Content hashes of files, for cache keys and lineage."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_md5(*paths) -> str:
    """md5 over the contents of the given files (in order); a folder hashes its files by relative path."""
    h = hashlib.md5()
    for p in paths:
        p = Path(p)
        files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
        for f in files:
            h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()
