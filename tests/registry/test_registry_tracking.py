"""Tracking store: SQLite under mlruns/, artifacts beside it, env overrides, no import side effects."""

import subprocess
import sys
from pathlib import Path

import mlflow

from causal_router.registry import tracking
from causal_router.settings.env import find_project_root


def test_tracking_uri_defaults_to_sqlite_under_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    (tmp_path / "params.yaml").write_text("runner: local\n")
    monkeypatch.chdir(tmp_path)
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"


def test_outside_a_project_a_clear_error_and_no_stray_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    if find_project_root() is not None:  # pragma: no cover - the temp folder sits in a project
        return
    try:
        tracking.configure()
    except tracking.ConfigError as err:
        assert "MLFLOW_TRACKING_URI" in str(err) and "not inside a causal-router project" in str(err)
    else:
        raise AssertionError("configure() outside a project must raise ConfigError")
    assert list(tmp_path.iterdir()) == []


def test_env_uri_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert tracking.tracking_uri(tmp_path) == "http://mlflow.internal:5000"
    assert tracking.artifact_location("http://mlflow.internal:5000") is None


def test_configure_creates_experiment_with_artifacts_under_mlruns(store):
    exp = mlflow.get_experiment_by_name("causal-router")
    assert exp is not None
    assert exp.artifact_location == (store / "mlruns" / "artifacts").resolve().as_uri()
    assert mlflow.get_tracking_uri() == f"sqlite:///{store.resolve()}/mlruns/mlflow.db"
    assert mlflow.get_registry_uri() == mlflow.get_tracking_uri()
    with mlflow.start_run() as run:
        mlflow.log_dict({"a": 1}, "x.json")
    assert Path(store / "mlruns" / "artifacts" / run.info.run_id / "artifacts" / "x.json").exists()


def test_experiment_name_from_env(store, monkeypatch):
    monkeypatch.setenv(tracking.EXPERIMENT_ENV, "router-exp")
    tracking.configure(store)
    assert mlflow.get_experiment_by_name("router-exp") is not None
    assert tracking.ensure_configured() == mlflow.get_tracking_uri()


def test_import_has_no_side_effects(tmp_path):
    code = ("import sys, causal_router.registry.tracking, causal_router.registry.lineage; "
            "print('mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()


def test_entry_points_outside_a_project_fail_clearly_without_stray_store(tmp_path):
    """The CLI and the README's pyfunc preamble, run in a folder outside any project."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    cli = subprocess.run([sys.executable, "-m", "causal_router.cli", "lineage", "models:/x@champion"],
                         cwd=tmp_path, capture_output=True, text=True, env=env)
    code = "from causal_router.registry.tracking import configure; configure()"
    snippet = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env)
    if "not inside a causal-router project" not in cli.stderr:  # pragma: no cover - temp folder inside a project
        assert (tmp_path / "mlflow.db").exists() is False
        return
    assert cli.returncode == 1 and "Traceback" not in cli.stderr and "MLFLOW_TRACKING_URI" in cli.stderr
    assert snippet.returncode != 0 and "MLFLOW_TRACKING_URI" in snippet.stderr
    assert list(tmp_path.iterdir()) == []
