"""``dvc repro`` runs the stages through the CLI in a fresh git + DVC repository, then reports up to
date; the Prefect flow, run on a copy of the same inputs, makes the same routers and metrics."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


def _run(cmd, cwd, env):
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)


def _stale(stdout: str) -> set:
    return {s for s in ("validate", "embed", "crossfit", "train", "evaluate") if f"{s}:" in stdout}


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_dvc_repro_then_status_clean_and_the_flow_agrees(project, another_project, prefect_harness):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    dvc = [sys.executable, "-m", "dvc"]
    for cmd in (["git", "init", "-q"], dvc + ["init", "-q"], dvc + ["add", "-q", "data"]):
        r = _run(cmd, project, env)
        assert r.returncode == 0, r.stderr
    (project / ".dvcignore").write_text((Path(__file__).resolve().parents[2] / ".dvcignore").read_text())
    r = _run(dvc + ["repro"], project, env)
    assert r.returncode == 0, r.stdout + r.stderr
    for stage in ("validate", "embed", "crossfit", "train", "evaluate"):
        assert f"'{stage}'" in r.stdout
    assert (project / "dvc.lock").exists() and (project / "artifacts" / "summary.json").exists()
    r = _run(dvc + ["status"], project, env)
    assert r.returncode == 0 and "up to date" in r.stdout, r.stdout

    # the flow on a copy of the same inputs: the same routers and metrics
    from causal_router.pipeline.stages import load_embeddings
    from causal_router.policy.routerset import RouterSet
    from flows.train import train_flow

    other = another_project
    train_flow("params.yaml", str(other), register_models=False)
    for name in ("artifacts/metrics.json", "artifacts/summary.json", "artifacts/crossfit/meta.json",
                 "artifacts/crossfit/clip_report.json"):
        # as text: byte-identical files (and NaN, e.g. the clip report of an arm without rows, compares equal)
        assert (project / name).read_text() == (other / name).read_text(), name
    # the manifests agree but for the payload's own hash: the pickles may differ in bytes (the scores below
    # agree to 1e-9), and each manifest records the hash of its own payload
    manifests = [json.loads((p / "artifacts/routers/manifest.json").read_text()) for p in (project, other)]
    assert all(m.pop("payload_sha256") for m in manifests) and manifests[0] == manifests[1]
    a, b = RouterSet.load(project / "artifacts/routers"), RouterSet.load(other / "artifacts/routers")
    ids = json.loads((project / "artifacts/embeddings/test.ids.json").read_text())
    X = load_embeddings(project / "artifacts/embeddings", "test", ids)
    for method in a.routers:
        for lam in a.lambdas:
            np.testing.assert_allclose(a.get(method).scores(X, lam), b.get(method).scores(X, lam), rtol=0, atol=1e-9,
                                       err_msg=f"{method} at {lam}")

    # an edit to a function body in causal/ makes the stages that run it stale, not the data stages
    scores = project / "src/causal_router/causal/scores.py"
    scores.write_text(scores.read_text().replace("return 1.0 / np.maximum(logged_propensity, clip)",
                                                 "return 2.0 / np.maximum(logged_propensity, clip)"))
    r = _run(dvc + ["status"], project, env)
    assert _stale(r.stdout) == {"crossfit", "train", "evaluate"}, r.stdout
    scores.write_text(scores.read_text().replace("return 2.0 / np", "return 1.0 / np"))
    # a changed parameter makes the training stages stale, not the data stages
    params = (project / "params.yaml").read_text().replace("- 7400", "- 3700")
    (project / "params.yaml").write_text(params)
    r = _run(dvc + ["status"], project, env)
    assert "train" in r.stdout and "validate:" not in r.stdout
