"""`python -m flows.train` stopped by SIGTERM in the middle of registration, then run again: no
RUNNING run, no orphan version, no stray Prefect server, and the rerun ends consistent."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NAMES = {"causal-router-interval", "causal-router-endpoint-0", "causal-router-endpoint-7400"}


def _query(db: Path, sql: str):
    if not db.exists():
        return []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    except sqlite3.OperationalError:  # not created yet, or busy
        return []


def _train(project, **kw):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return subprocess.Popen([sys.executable, "-m", "flows.train", "params.yaml"], cwd=project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


@pytest.mark.slow
def test_sigterm_during_registration_then_rerun(project):
    db = project / "mlruns" / "mlflow.db"
    proc = _train(project)
    deadline = time.time() + 900
    # registration has begun: the training run logged its first router model
    while proc.poll() is None and time.time() < deadline and not _query(db, "SELECT 1 FROM logged_models"):
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read()[-3000:]
    children = _children(proc.pid)  # the temporary Prefect server
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, out[-3000:]
    time.sleep(2)
    assert [c for c in children if Path(f"/proc/{c}").exists()] == []  # no stray server
    assert _query(db, "SELECT run_uuid FROM runs WHERE status = 'RUNNING'") == []
    assert _query(db, "SELECT name, version FROM model_versions") == []  # no orphan version
    failed = _query(db, "SELECT status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                        "WHERE t.key = 'causal_router.kind' AND t.value = 'training'")
    assert failed and {s for (s,) in failed} == {"FAILED"}

    rerun = _train(project)
    out, _ = rerun.communicate(timeout=900)
    assert rerun.returncode == 0, out[-3000:]
    assert _query(db, "SELECT run_uuid FROM runs WHERE status = 'RUNNING'") == []
    versions = _query(db, "SELECT name, version, run_id FROM model_versions")
    assert {n for n, _, _ in versions} == NAMES and len(versions) == len(NAMES)  # one each, from the rerun
    (run_id,) = {r for _, _, r in versions}
    assert _query(db, f"SELECT status FROM runs WHERE run_uuid = '{run_id}'") == [("FINISHED",)]
    aliases = _query(db, "SELECT name, alias, version FROM registered_model_aliases")
    assert sorted(aliases) == sorted((n, "challenger", v) for n, v, _ in versions)
