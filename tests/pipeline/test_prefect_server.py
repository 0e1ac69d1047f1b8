"""Prefect's temporary server stops with the process that started it, even after ``kill -9``;
started by Prefect alone it would not (the control)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import contextlib, sys, time
from prefect import flow
from prefect.server.api.server import SubprocessASGIServer
from causal_router.pipeline.prefect_server import temporary_server

@flow
def one():
    return 1

with temporary_server() if sys.argv[1] == "tied" else contextlib.nullcontext():
    assert one() == 1  # a flow run against the temporary server
    print("server", SubprocessASGIServer._instances[None].server_process.pid, flush=True)
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _server_of_killed_flow(tmp_path: Path, mode: str) -> int:
    """Start a flow that holds its temporary server, kill -9 it; the server's pid."""
    script = tmp_path / "hold.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PREFECT_HOME": str(tmp_path / f"home-{mode}"),
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300"}  # a first start migrates a new database
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([sys.executable, "-u", str(script), mode], env=env, stdout=subprocess.PIPE,
                            stderr=(tmp_path / f"{mode}.err").open("w"), text=True)
    try:
        line = ""
        deadline = time.time() + 300
        while not line.startswith("server") and time.time() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
        err = (tmp_path / f"{mode}.err").read_text()[-2000:]
        assert line.startswith("server"), f"no server (exit {proc.poll()}): {err}"
        pid = int(line.split()[1])
        assert _alive(pid)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return pid


def _gone_within(pid: int, seconds: float = 30) -> bool:
    deadline = time.time() + seconds
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.2)
    return not _alive(pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_the_temporary_server_dies_with_a_killed_flow(tmp_path):
    assert _gone_within(_server_of_killed_flow(tmp_path, "tied"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_without_the_tie_the_server_outlives_the_flow(tmp_path):
    """The control: Prefect's own start leaves the server running after kill -9 (what the tie fixes)."""
    pid = _server_of_killed_flow(tmp_path, "untied")
    try:
        assert not _gone_within(pid, 3)
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)


def test_a_configured_api_url_is_left_alone(monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from causal_router.pipeline.prefect_server import temporary_server

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}), temporary_server() as server:
        assert server is None
