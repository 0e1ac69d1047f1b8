"""The e2e run leaves the project as it found it: logs, data.dvc, dvc.lock and the embedding cache."""

import subprocess
from types import SimpleNamespace

from causal_router.stack.protect import protect


def test_the_logs_and_the_embedding_cache_are_restored(tmp_path):
    root, work = tmp_path / "project", tmp_path / "stack"
    (root / "data").mkdir(parents=True)
    work.mkdir()
    (root / "data" / "train.parquet").write_text("logs")
    (root / "data.dvc").write_text("outs: a\n")
    (root / "dvc.lock").write_text("stages: a\n")
    cache = root / "artifacts" / "embedding-cache"
    cache.mkdir(parents=True)
    (cache / "shard-a.npz").write_text("vectors")
    for cmd in (["init", "-q"], ["add", "data.dvc", "dvc.lock"],
                ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x"]):
        subprocess.run(["git", *cmd], cwd=root, check=True)
    restore = protect(SimpleNamespace(root=root, dir=work))
    assert not cache.exists()  # the runs start without the project's cache
    # what the e2e's runs do: new logs, new data version, new cache entries
    (root / "data" / "train.parquet").write_text("the loop's logs")
    (root / "dvc.lock").write_text("stages: b\n")
    cache.mkdir()
    (cache / "shard-b.npz").write_text("other vectors")
    restore()
    assert (root / "data" / "train.parquet").read_text() == "logs"
    assert (root / "dvc.lock").read_text() == "stages: a\n"
    assert sorted(p.name for p in cache.iterdir()) == ["shard-a.npz"]
    assert not (root / "artifacts" / "embedding-cache.e2e-parked").exists()
