"""``dvc repro`` runs the stages through the CLI in a fresh git + DVC repository, then reports up to date."""

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _run(cmd, cwd, env):
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.timeout(600)
def test_dvc_repro_then_status_clean(project):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    dvc = [sys.executable, "-m", "dvc"]
    for cmd in (["git", "init", "-q"], dvc + ["init", "-q"], dvc + ["add", "-q", "data"]):
        r = _run(cmd, project, env)
        assert r.returncode == 0, r.stderr
    r = _run(dvc + ["repro"], project, env)
    assert r.returncode == 0, r.stdout + r.stderr
    for stage in ("validate", "embed", "crossfit", "train", "evaluate"):
        assert f"'{stage}'" in r.stdout
    assert (project / "dvc.lock").exists() and (project / "artifacts" / "summary.json").exists()
    r = _run(dvc + ["status"], project, env)
    assert r.returncode == 0 and "up to date" in r.stdout, r.stdout
    # a changed parameter makes the training stages stale, not the data stages
    params = (project / "params.yaml").read_text().replace("- 7400", "- 3700")
    (project / "params.yaml").write_text(params)
    r = _run(dvc + ["status"], project, env)
    assert "train" in r.stdout and "validate:" not in r.stdout
