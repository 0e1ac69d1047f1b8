"""Tracking store: SQLite under mlruns/, artifacts beside it, env overrides, no import side effects."""

import subprocess
import sys
from pathlib import Path

import mlflow

from causal_router.registry import tracking


def test_tracking_uri_defaults_to_sqlite_under_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    monkeypatch.chdir(tmp_path)
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"


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
