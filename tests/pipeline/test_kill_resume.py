"""`python -m flows.train` killed with SIGKILL at every stage in turn, each time rerun: every rerun
resumes from the stages that finished, no kill leaves a Prefect server, a RUNNING run or an orphan
version behind, and the last run ends with the routers an uninterrupted run trains."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from causal_router.failpoints import ENV
from tests.pipeline.test_flow_signals import NAMES, _query

ROOT = Path(__file__).resolve().parents[2]
# each kill point, and the stages (with a cache) that have finished, outputs and result, when a run reaches it
POINTS = [
    ("validate", []),
    ("embed", ["validate"]),
    ("crossfit", ["validate", "embed"]),
    ("endpoint", ["validate", "embed", "crossfit"]),
    ("train", ["validate", "embed", "crossfit", "endpoint"]),
    ("evaluate", ["validate", "embed", "crossfit", "endpoint"]),
    ("dvc_commit", ["validate", "embed", "crossfit", "endpoint"]),
    ("register:models", ["validate", "embed", "crossfit", "endpoint"]),
    ("register:versions", ["validate", "embed", "crossfit", "endpoint"]),
    ("register:aliases", ["validate", "embed", "crossfit", "endpoint"]),
]
OUTPUTS = ["artifacts/crossfit/routing_data.joblib", "artifacts/routers/routers.joblib", "artifacts/metrics.json"]


def _train(project: Path, prefect_home: Path, failpoint: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
           "PREFECT_HOME": str(prefect_home), "PREFECT_LOGGING_LEVEL": "INFO"}
    env.pop(ENV, None)
    if failpoint:
        env[ENV] = failpoint
    return subprocess.run([sys.executable, "-m", "flows.train", "params.yaml"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=900)


def _servers(prefect_home: Path) -> list[int]:
    """Live Prefect API servers started with this PREFECT_HOME."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or b"create_app" not in (proc / "cmdline").read_bytes():
                continue
            if f"PREFECT_HOME={prefect_home}".encode() not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":  # a zombie is dead
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _no_servers_within(prefect_home: Path, seconds: float = 30) -> list[int]:
    deadline = time.time() + seconds
    while (left := _servers(prefect_home)) and time.time() < deadline:
        time.sleep(0.5)
    return left


def _assert_cached(log: str, stages: list[str], run: str) -> None:
    """Each of ``stages`` ran in this run's log only as a cache hit: resumed, not redone."""
    for stage in stages:
        done = [line for line in log.splitlines() if f"Task run '{stage}-" in line and "Finished in state" in line]
        assert done and all("Cached" in line for line in done), f"{run}: {stage} was redone\n{log[-3000:]}"


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_kill_9_at_every_stage_then_rerun(project, another_project, tmp_path):
    db = project / "mlruns" / "mlflow.db"
    home = tmp_path / "prefect-home"
    recorded: list[str] = []  # the stages the killed runs so far finished
    for point, finished in POINTS:
        run = _train(project, home, point)
        log = run.stdout + run.stderr
        assert run.returncode == -signal.SIGKILL, f"{point}: {log[-3000:]}"
        _assert_cached(log, recorded, point)
        assert _no_servers_within(home) == [], f"{point}: a Prefect server outlived the killed flow"
        recorded = finished

    final = _train(project, home)
    assert final.returncode == 0, (final.stdout + final.stderr)[-3000:]
    _assert_cached(final.stdout + final.stderr, recorded, "the last run")
    assert _no_servers_within(home) == []
    assert _query(db, "SELECT run_uuid FROM runs WHERE status = 'RUNNING'") == []
    # no orphan of a killed run (MLflow keeps a deleted version's row, redacted, as Deleted_Internal)
    versions = _query(db, "SELECT name, version, run_id FROM model_versions WHERE current_stage != 'Deleted_Internal'")
    assert {n for n, _, _ in versions} == NAMES and len(versions) == len(NAMES)
    (run_id,) = {r for _, _, r in versions}
    assert _query(db, f"SELECT status FROM runs WHERE run_uuid = '{run_id}'") == [("FINISHED",)]
    aliases = _query(db, "SELECT name, alias, version FROM registered_model_aliases")
    assert sorted(aliases) == sorted((n, "challenger", v) for n, v, _ in versions)

    # the same bytes as a run that was never interrupted
    clean = _train(another_project, tmp_path / "prefect-home-clean")
    assert clean.returncode == 0, (clean.stdout + clean.stderr)[-3000:]
    assert {p: _md5(project / p) for p in OUTPUTS} == {p: _md5(another_project / p) for p in OUTPUTS}
