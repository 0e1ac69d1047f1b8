"""Named crash points: SIGKILL where $CAUSAL_ROUTER_FAILPOINT names the point, nothing elsewhere."""

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = "from causal_router.failpoints import failpoint; failpoint('embed'); print('went on')"


def _run(point):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("CAUSAL_ROUTER_FAILPOINT", None)
    if point is not None:
        env["CAUSAL_ROUTER_FAILPOINT"] = point
    return subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, timeout=60)


def test_the_named_point_kills_the_process():
    run = _run("embed")
    assert run.returncode == -signal.SIGKILL and "went on" not in run.stdout


def test_other_points_and_no_setting_do_nothing():
    for point in (None, "crossfit", ""):
        run = _run(point)
        assert run.returncode == 0 and "went on" in run.stdout
