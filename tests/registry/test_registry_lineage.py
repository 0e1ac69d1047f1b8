"""Lineage: git commit and DVC hashes as tags, and a later check of whether the data is still there."""

import hashlib
import shutil
import subprocess

import mlflow
import pytest

from causal_router.registry.lineage import collect_lineage, declared_hash, describe, dir_md5, format_lineage, hash_path
from causal_router.registry.runs import INTERVAL_NAME, log_training_run, register_routers


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    (root / "data" / "emb" / "sub").mkdir(parents=True)
    (root / "data" / "logs.csv").write_bytes(b"prompt_id,score\np1,1\n")
    (root / "data" / "emb" / "a.npy").write_bytes(b"\x00\x01\x02")
    (root / "data" / "emb" / "sub" / "b.txt").write_bytes(b"hello\n")
    return root


def test_tags_hold_md5_of_the_data_outside_git(repo):
    tags = collect_lineage(repo, {"logs": "data/logs.csv", "embeddings": repo / "data" / "emb"})
    assert tags["git.commit"] == "unknown"
    assert tags["data.logs.md5"] == md5(b"prompt_id,score\np1,1\n")
    assert tags["data.logs.path"] == "data/logs.csv" and tags["data.logs.source"] == "computed"
    assert tags["data.embeddings.md5"].endswith(".dir") and tags["data.embeddings.path"] == "data/emb"
    with pytest.raises(FileNotFoundError, match="nope"):
        collect_lineage(repo, {"x": "nope.csv"})


def test_directory_hash_matches_dvc(repo):
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.meta import Meta
    from dvc_data.hashfile.tree import Tree

    tree = Tree()
    for rel in ("a.npy", "sub/b.txt"):
        tree.add(tuple(rel.split("/")), Meta(), HashInfo("md5", hash_path(repo / "data" / "emb" / rel)))
    tree.digest()
    assert dir_md5(repo / "data" / "emb") == tree.hash_info.value


def test_hashes_recorded_by_dvc_are_read(repo):
    logs_md5 = md5((repo / "data" / "logs.csv").read_bytes())
    (repo / "data" / "logs.csv.dvc").write_text(
        f"outs:\n- md5: {logs_md5}\n  size: 21\n  hash: md5\n  path: logs.csv\n")
    emb = dir_md5(repo / "data" / "emb")
    (repo / "dvc.lock").write_text(f"schema: '2.0'\nstages:\n  embed:\n    cmd: x\n    outs:\n    - path: data/emb\n"
                                   f"      hash: md5\n      md5: {emb}\n      nfiles: 2\n")
    assert declared_hash(repo, "data/logs.csv") == (logs_md5, "data/logs.csv.dvc")
    assert declared_hash(repo, repo / "data" / "emb") == (emb, "dvc.lock:embed")
    tags = collect_lineage(repo, {"logs": "data/logs.csv", "embeddings": "data/emb"})
    assert tags["data.logs.source"] == "data/logs.csv.dvc" and tags["data.embeddings.source"] == "dvc.lock:embed"
    # the workspace moved on without `dvc add`: what was used is recorded, DVC's hash kept beside it
    (repo / "data" / "logs.csv").write_bytes(b"changed\n")
    tags = collect_lineage(repo, {"logs": "data/logs.csv"})
    assert tags["data.logs.md5"] == md5(b"changed\n") and tags["data.logs.dvc_md5"] == logs_md5
    # trusting DVC: no hashing, even of missing data
    shutil.rmtree(repo / "data" / "emb")
    assert collect_lineage(repo, {"e": "data/emb"}, verify=False)["data.e.md5"] == emb


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_commit_and_dirty(repo, monkeypatch):
    for k in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{k}_NAME", "t")
        monkeypatch.setenv(f"GIT_{k}_EMAIL", "t@example.com")
    git = lambda *a: subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    git("add", "data/logs.csv")
    git("commit", "-qm", "data")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    tags = collect_lineage(repo, {"logs": "data/logs.csv"})
    assert tags["git.commit"] == head and tags["git.dirty"] == "false"
    (repo / "data" / "logs.csv").write_bytes(b"edited\n")
    assert collect_lineage(repo, {"logs": "data/logs.csv"})["git.dirty"] == "true"


def test_describe_says_present_changed_missing(store, repo, routerset_dir):
    tags = collect_lineage(repo, {"logs": "data/logs.csv", "embeddings": "data/emb"})
    run_id = log_training_run(routerset_dir, [{"method": "rm-interval", "lambda": 0.0, "utility": 0.7}],
                              {"cv": 5}, tags)
    register_routers(run_id, routerset_dir, lambdas=[], tags=tags)
    uri = f"models:/{INTERVAL_NAME}@challenger"
    d = describe(uri, repo_root=repo)
    assert d["name"] == INTERVAL_NAME and d["version"] == "1" and d["run_id"] == run_id
    assert "challenger" in d["aliases"]
    assert d["run"]["params"]["cv"] == "5" and d["run"]["metrics"]["utility/rm-interval"] == 0.7
    assert d["data"]["logs"]["status"] == "present" and d["data"]["embeddings"]["status"] == "present"
    assert d["data"]["logs"]["md5"] == tags["data.logs.md5"]
    text = format_lineage(d)
    assert INTERVAL_NAME in text and "present" in text and "data/logs.csv" in text

    (repo / "data" / "logs.csv").write_bytes(b"prompt_id,score\np1,0\n")
    d = describe(uri, repo_root=repo)
    assert d["data"]["logs"]["status"] == "changed" and d["data"]["embeddings"]["status"] == "present"
    assert "changed" in format_lineage(d)
    shutil.rmtree(repo / "data" / "emb")
    assert describe(f"models:/{INTERVAL_NAME}/1", repo_root=repo)["data"]["embeddings"]["status"] == "missing"
    assert describe(INTERVAL_NAME, repo_root=repo)["version"] == "1"
    with pytest.raises(mlflow.exceptions.MlflowException):
        describe(f"models:/{INTERVAL_NAME}@champion", repo_root=repo)
