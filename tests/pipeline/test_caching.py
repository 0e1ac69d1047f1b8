"""The stage caches see the code they run: STAGE_CODE covers each stage's imports, dvc.yaml lists
the same code deps, and the source digest moves with an edit."""

from pathlib import Path

import pytest
import yaml

from causal_router.pipeline import caching
from causal_router.pipeline.caching import STAGE_CODE, covered, output_hashes, outputs_intact

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("validate", "embed", "crossfit", "train", "evaluate")


@pytest.mark.parametrize("stage", STAGES)
def test_stage_code_covers_every_module_the_stage_imports(stage):
    assert covered(stage) == [], f"add these to STAGE_CODE[{stage!r}] and dvc.yaml"


@pytest.mark.parametrize("stage", STAGES)
def test_dvc_yaml_lists_the_stage_code(stage):
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"]
    code = {d for d in deps if d.startswith("src/")}
    assert code == {f"src/causal_router/{rel}" for rel in STAGE_CODE[stage]}


def test_source_digest_follows_an_edit(tmp_path, monkeypatch):
    import shutil

    pkg = tmp_path / "causal_router"
    shutil.copytree(caching.PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(caching, "PACKAGE", pkg)
    before = {s: caching.source_digest(s) for s in STAGES}
    scores = pkg / "causal" / "scores.py"
    scores.write_text(scores.read_text().replace("return 1.0 / np.maximum(logged_propensity, clip)",
                                                 "return 2.0 / np.maximum(logged_propensity, clip)"))
    after = {s: caching.source_digest(s) for s in STAGES}
    assert {s for s in STAGES if before[s] != after[s]} == {"crossfit", "train", "evaluate"}
    (pkg / "causal" / "__pycache__").mkdir()
    (pkg / "causal" / "__pycache__" / "scores.cpython-311.pyc").write_bytes(b"byte-code is not code")
    assert caching.source_digest("crossfit") == after["crossfit"]


def test_outputs_intact_sees_damage_and_loss(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.npy").write_bytes(b"1234")
    hashes = output_hashes(tmp_path / "out")
    assert outputs_intact(hashes)
    (tmp_path / "out" / "a.npy").write_bytes(b"12")
    assert not outputs_intact(hashes)
    (tmp_path / "out" / "a.npy").unlink()
    assert not outputs_intact(hashes)


def test_the_flow_commits_only_the_data_it_validated(tmp_path, monkeypatch):
    """dvc.lock is written only when data/ still holds what the flow validated."""
    from causal_router.hashing import hash_path
    from causal_router.pipeline import dvc
    from causal_router.pipeline.tasks import dvc_commit

    committed = []
    monkeypatch.setattr(dvc, "commit", lambda root: committed.append(root) or True)
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.parquet").write_bytes(b"validated rows")
    validated = hash_path(data)
    (data / "train.parquet").write_bytes(b"rows that arrived after validation")
    assert dvc_commit.fn(str(tmp_path), str(data), validated) is False and not committed
    assert dvc_commit.fn(str(tmp_path), str(data), hash_path(data)) is True and committed == [str(tmp_path)]
