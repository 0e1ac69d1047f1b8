"""What ``make e2e`` leaves behind: the loop rewrites the logs (ingest), ``data.dvc`` and ``dvc.lock``;
when those were unchanged in git before the run they are restored afterwards (``--keep-data`` keeps
the loop's versions), and so is the embedding cache: the runs' cached vectors (computed in other
batches, equal to about 1e-7) would otherwise make the next ``make run`` record other embedding
hashes in ``dvc.lock``."""

from __future__ import annotations

TRACKED = ("data.dvc", "dvc.lock")


def protect(stack):
    """Back up the logs when ``data.dvc`` and ``dvc.lock`` are unchanged in git; returns the restore
    function (None when there is nothing clean to protect)."""
    import shutil
    import subprocess

    root = stack.root
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *TRACKED], cwd=root, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    data = root / "data"
    if dirty or not data.is_dir():
        return None
    backup = stack.dir / "e2e-backup" / "data"
    shutil.rmtree(backup, ignore_errors=True)
    shutil.copytree(data, backup)
    # the cache is parked beside itself (a rename, whatever its size) and the runs start without it
    cache = root / "artifacts" / "embedding-cache"
    parked = cache.with_name("embedding-cache.e2e-parked")
    shutil.rmtree(parked, ignore_errors=True)
    had_cache = cache.is_dir()
    if had_cache:
        cache.rename(parked)

    def restore():
        shutil.rmtree(data, ignore_errors=True)
        shutil.copytree(backup, data)
        subprocess.run(["git", "checkout", "--", *TRACKED], cwd=root, capture_output=True)
        shutil.rmtree(cache, ignore_errors=True)
        if had_cache:
            parked.rename(cache)
        print("e2e: restored data/, data.dvc, dvc.lock and the embedding cache as they were "
              "(--keep-data keeps the loop's)")

    return restore
