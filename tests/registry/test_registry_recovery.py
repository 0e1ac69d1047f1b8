"""A training registration that fails, is interrupted or is killed leaves no orphan version and no
RUNNING run, and the next registration ends consistent (real MLflow on SQLite, real signals).
The flow-level twin (SIGTERM to `python -m flows.train`) is tests/pipeline/test_flow_signals.py."""

import os
import signal
import subprocess
import sys
import textwrap

import mlflow
import pytest

from causal_router.registry import runs
from causal_router.registry.recovery import Terminated, deferred_signals, recover_interrupted, terminate_on_signals
from causal_router.registry.runs import INTERVAL_NAME, endpoint_name, log_training_run, register_routers

NAMES = (endpoint_name(0.0), INTERVAL_NAME)


def register(routerset_dir):
    run_id = log_training_run(routerset_dir, [], {"seed": 0})
    return run_id, register_routers(run_id, routerset_dir, [0.0])


def challengers():
    c = mlflow.MlflowClient()
    return {n: str(c.get_model_version_by_alias(n, "challenger").version) for n in NAMES}


def running_runs():
    exp = mlflow.get_experiment_by_name("causal-router")
    return mlflow.MlflowClient().search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")


def versions_of(run_id):
    return mlflow.MlflowClient().search_model_versions(f"run_id = '{run_id}'")


def assert_consistent(run_id, before):
    """The failed run: FAILED, no version of its own; the aliases as they were; nothing RUNNING."""
    assert mlflow.MlflowClient().get_run(run_id).info.status == "FAILED"
    assert versions_of(run_id) == []
    assert challengers() == before
    assert running_runs() == []


def fail_on_call(n, make_error, real):
    calls = {"n": 0}

    def wrapper(*a, **k):
        calls["n"] += 1
        if calls["n"] == n:
            raise make_error()
        return real(*a, **k)

    return wrapper


def sigterm():
    os.kill(os.getpid(), signal.SIGTERM)  # the handler raises Terminated right here
    raise AssertionError("SIGTERM did not interrupt")


@pytest.mark.parametrize("stage", ["logging the second model", "creating the second version",
                                   "moving the second alias"])
def test_failed_registration_is_undone(store, routerset_dir, monkeypatch, stage):
    first_run, first = register(routerset_dir)
    run_id = log_training_run(routerset_dir, [], {"seed": 1})
    if stage == "logging the second model":  # Ctrl-C
        monkeypatch.setattr(runs, "log_router_model", fail_on_call(2, KeyboardInterrupt, runs.log_router_model))
        expected = KeyboardInterrupt
    elif stage == "creating the second version":  # a real SIGTERM, delivered to this process
        monkeypatch.setattr(mlflow, "register_model", fail_on_call(2, sigterm, mlflow.register_model))
        expected = Terminated
    else:  # an error of the store
        monkeypatch.setattr(mlflow.MlflowClient, "set_registered_model_alias",
                            fail_on_call(2, lambda: RuntimeError("database is locked"),
                                         mlflow.MlflowClient.set_registered_model_alias))
        expected = RuntimeError
    with terminate_on_signals(), pytest.raises(expected):
        register_routers(run_id, routerset_dir, [0.0])
    monkeypatch.undo()
    assert_consistent(run_id, first)
    # the rerun registers cleanly
    rerun, versions = register(routerset_dir)
    assert challengers() == versions and {v.version for v in versions_of(rerun)} == set(map(int, versions.values()))
    assert running_runs() == [] and recover_interrupted() == {"failed_runs": [], "deleted_versions": [],
                                                              "restored_aliases": []}


KILLED = textwrap.dedent("""
    import os, sys, time
    import mlflow
    from causal_router.registry import runs, tracking
    from causal_router.registry.recovery import deferred_signals

    root, routers, sig = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tracking.configure(root)
    run_id = runs.log_training_run(routers, [], {"seed": 2})
    print(run_id, flush=True)
    real = mlflow.register_model

    def register_then_die(*a, **k):
        mv = real(*a, **k)
        print(f"Created version {mv.version}", flush=True)
        os.kill(os.getpid(), sig)  # SIGKILL ends here; SIGTERM is noted, acted on at the next safe point
        time.sleep(0.5)
        return mv

    mlflow.register_model = register_then_die
    with deferred_signals():  # as the train flow registers
        runs.register_routers(run_id, routers, [0.0])
""")


def kill_during_registration(store, routerset_dir, sig):
    out = subprocess.run([sys.executable, "-c", KILLED, str(store), str(routerset_dir), str(int(sig))],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = out.stdout.split()
    assert "Created" in out.stdout, out.stderr[-3000:]
    return out.returncode, lines[0]


def test_sigterm_during_registration_cleans_up_in_the_process(store, routerset_dir):
    """SIGTERM right after the first version was created: the process stops at the next safe point,
    undoing the registration itself."""
    _, first = register(routerset_dir)
    code, run_id = kill_during_registration(store, routerset_dir, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM
    assert_consistent(run_id, first)  # without any recovery by a later run


def test_kill_9_during_registration_is_cleaned_up_by_the_rerun(store, routerset_dir):
    """The issue's reproduction: kill -9 right after the first "Created version" line."""
    _, first = register(routerset_dir)
    code, run_id = kill_during_registration(store, routerset_dir, signal.SIGKILL)
    assert code == -signal.SIGKILL
    c = mlflow.MlflowClient()
    # the debris kill -9 leaves: a RUNNING run and a version without alias
    assert c.get_run(run_id).info.status == "RUNNING"
    (orphan,) = versions_of(run_id)
    assert not orphan.aliases and challengers() == first
    done = recover_interrupted()  # what the train flow's next registration does first
    assert done["failed_runs"] == [run_id] and done["deleted_versions"] == [f"{orphan.name}/{orphan.version}"]
    assert_consistent(run_id, first)
    rerun, versions = register(routerset_dir)
    assert challengers() == versions and running_runs() == []


def test_recovery_leaves_live_and_other_machines_runs_alone(store, routerset_dir):
    run_id = log_training_run(routerset_dir, [], {})
    c = mlflow.MlflowClient()
    c.update_run(run_id, "RUNNING")  # this process holds it: alive
    assert recover_interrupted()["failed_runs"] == []
    c.set_tag(run_id, "causal_router.host", "another-machine")
    c.set_tag(run_id, "causal_router.pid", "999999999")
    assert recover_interrupted()["failed_runs"] == [] and c.get_run(run_id).info.status == "RUNNING"


def test_a_signal_after_registration_completed_keeps_it(store, routerset_dir):
    """Deferred: the signal is acted on when the block ends, and the finished registration stays."""
    with pytest.raises(Terminated), deferred_signals():
        run_id, versions = register(routerset_dir)
        os.kill(os.getpid(), signal.SIGTERM)
    assert mlflow.MlflowClient().get_run(run_id).info.status == "FINISHED"
    assert challengers() == versions and running_runs() == []
