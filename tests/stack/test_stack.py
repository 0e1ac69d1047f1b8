"""The native stack's fast pieces for real: PostgreSQL (initdb on first use) and an MLflow server on
free loopback ports, a run tracked through it (row in PostgreSQL, artifact in the served store),
`down` stopping exactly the recorded PIDs and keeping the data, `up` resuming on it."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from causal_router.stack import processes as P
from causal_router.stack import stack as S


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def have_postgres() -> bool:
    try:
        P.pg_tool("initdb")
    except P.StackError:
        return False
    return os.geteuid() != 0 or shutil.which("runuser") is not None


@pytest.fixture
def small_stack(monkeypatch):
    """A Stack of a throwaway project; its folder is readable by the postgres user (pytest's own
    temp folders are private to root)."""
    base = Path(tempfile.mkdtemp(prefix="cr-stack-test-"))
    base.chmod(0o755)
    (base / "params.yaml").write_text("runner: local\n")
    monkeypatch.delenv(S.DIR_ENV, raising=False)
    st = S.Stack(base)
    st.run.mkdir(parents=True)
    ports = {name: free_port() for name in S.PREFERRED_PORTS}
    (st.run / "ports.json").write_text(json.dumps(ports))
    try:
        yield st
    finally:
        st.down()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.skipif(not have_postgres(), reason="PostgreSQL server binaries are not installed")
def test_postgres_and_mlflow_server_track_stop_and_resume(small_stack):
    import mlflow
    import psycopg

    st = small_stack
    st._start_postgres(120)
    st._start_mlflow(240)
    pids = {n: st.record(n)["pid"] for n in ("postgres", "mlflow")}
    assert all(st.alive(n) for n in pids)
    uri = st.client_env()["MLFLOW_TRACKING_URI"]
    assert uri.startswith("http://127.0.0.1:")
    c = mlflow.MlflowClient(uri, uri)
    exp = c.create_experiment("stack-test")
    run = c.create_run(exp)
    c.log_metric(run.info.run_id, "utility", 0.5)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "evidence.json").write_text("{}")
        c.log_artifact(run.info.run_id, str(Path(tmp, "evidence.json")))
    port = st.ports()["postgres"]
    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=mlflow") as conn:
        assert conn.execute("SELECT count(*) FROM runs WHERE run_uuid = %s", (run.info.run_id,)).fetchone()[0] == 1
        dbs = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert {"mlflow", "prefect", "decisions"} <= dbs
    assert list(st.artifacts.rglob("evidence.json")), "artifact in the served store"
    rows = {r["service"]: r for r in st.status()}
    assert rows["mlflow"]["state"] == "running" and rows["mlflow"]["url"] == uri

    assert set(st.down()) == {"postgres", "mlflow"}
    assert not any(st.alive(n) for n in pids) and all(P.start_time(p) is None for p in pids.values())
    assert (st.pgdata / "PG_VERSION").exists(), "down keeps the data"

    st._start_postgres(120)  # resume on the same data
    st._start_mlflow(240)
    assert mlflow.MlflowClient(uri, uri).get_run(run.info.run_id).data.metrics["utility"] == 0.5


def test_down_never_signals_a_process_it_did_not_start(tmp_path, monkeypatch):
    """A stale record whose PID now belongs to another process (other start time) is not stopped."""
    (tmp_path / "params.yaml").write_text("runner: local\n")
    monkeypatch.delenv(S.DIR_ENV, raising=False)
    st = S.Stack(tmp_path)
    st.run.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (st.run / "dask-scheduler.json").write_text(json.dumps({"pid": other.pid, "start_time": "1", "port": 1}))
        assert not st.alive("dask-scheduler")
        assert st.down() == []
        assert other.poll() is None, "the unrelated process still runs"
    finally:
        other.kill()
        other.wait()


def test_outside_a_project_the_stack_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if S.find_project_root() is not None:  # pragma: no cover - temp folder inside a project
        pytest.skip("the temp folder sits inside a project")
    assert S.main(["status"]) == 1
