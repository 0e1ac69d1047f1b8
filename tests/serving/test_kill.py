"""A server killed with SIGKILL in the middle of a load loses no decision it acknowledged."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from causal_router.serving.store import DecisionStore
from tests.serving.conftest import URI, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_sigkill_mid_load_loses_no_acknowledged_decision(registry, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump(
        {"serve": {"encoder": "tests.serving.tiny:TinyEncoder", "explore": 0.2, "floor": 0.02, "seed": 1}}))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), "MLFLOW_TRACKING_URI": registry}
    env.pop("CAUSAL_ROUTER_DECISIONS_URI", None)
    cmd = [sys.executable, "-m", "causal_router.cli", "serve", "--port", str(port), "--model-uri", URI]
    proc = subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)

        acked, fed, stop = [], [], threading.Event()

        def client(k):
            with httpx.Client(base_url=url, timeout=10) as c:
                i = 0
                while not stop.is_set():
                    try:
                        r = c.post("/v1/route", json={"prompts": [f"c{k} r{i}"], "lam": 5.0})
                        if r.status_code == 200:
                            did = r.json()["decisions"][0]["decision_id"]
                            acked.append(did)
                            if c.post("/v1/feedback", json={"decision_id": did, "score": 1.0,
                                                            "cost": 0.0}).status_code == 200:
                                fed.append(did)
                    except httpx.TransportError:  # the server is gone
                        return
                    i += 1

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        [t.start() for t in threads]
        while len(acked) < 100:
            assert time.monotonic() < deadline + 60 and proc.poll() is None
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # mid-load: clients are still sending
        proc.wait(timeout=10)
        stop.set()
        [t.join(timeout=20) for t in threads]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    store = DecisionStore(f"sqlite:///{project / 'decisions' / 'decisions.db'}")
    stored = set(store.frame("decisions")["decision_id"])
    assert len(acked) >= 100 and set(acked) <= stored
    assert set(fed) <= set(store.frame("feedback")["decision_id"])
