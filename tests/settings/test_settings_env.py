"""Environment resolution: the project folder, the stores' URIs, the runner, DVC remote and Prefect's home."""

import os
import subprocess
import sys
from pathlib import Path

from causal_router.settings import env

ROOT = Path(__file__).resolve().parents[2]


def test_project_root_found_by_walking_up(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(env.DECISIONS_ENV, raising=False)
    (tmp_path / "params.yaml").write_text("runner: local\n")
    deep = tmp_path / "src" / "pkg"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert env.find_project_root() == tmp_path.resolve()
    assert env.tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert env.decisions_uri() == f"sqlite:///{tmp_path.resolve()}/decisions/decisions.db"


def test_environment_resolves_env_and_params(tmp_path, monkeypatch):
    for var in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "PREFECT_HOME", env.RUNNER_ENV, env.DECISIONS_ENV,
                env.DVC_REMOTE_ENV):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "params.yaml").write_text("runner: dask\n")
    embedded = env.environment(tmp_path)
    assert embedded["MLFLOW_TRACKING_URI"].endswith("/mlruns/mlflow.db")
    assert embedded["PREFECT_API_URL"] is None and embedded[env.RUNNER_ENV] == "dask"
    assert embedded["PREFECT_HOME"] == str(tmp_path.resolve() / ".cache" / "prefect")
    assert embedded[env.DVC_REMOTE_ENV] is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4299/api")
    monkeypatch.setenv(env.RUNNER_ENV, "dask://127.0.0.1:8799")
    monkeypatch.setenv(env.DECISIONS_ENV, "postgresql+psycopg://u@127.0.0.1:5499/decisions")
    monkeypatch.setenv(env.DVC_REMOTE_ENV, "s3://bucket/dvc")
    servers = env.environment(tmp_path)
    assert servers["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5999"
    assert servers[env.RUNNER_ENV] == "dask://127.0.0.1:8799"
    assert servers[env.DECISIONS_ENV].startswith("postgresql+psycopg://")
    assert servers[env.DVC_REMOTE_ENV] == "s3://bucket/dvc"


def test_task_runner_setting(monkeypatch):
    monkeypatch.delenv(env.RUNNER_ENV, raising=False)
    assert env.task_runner_setting(None) == "local" and env.task_runner_setting("dask") == "dask"
    monkeypatch.setenv(env.RUNNER_ENV, "dask://h:1")
    assert env.task_runner_setting("local") == "dask://h:1"


def test_prefect_home_is_per_project_and_gitignored(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_HOME", raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    defaults = env.prefect_defaults(tmp_path)
    assert defaults["PREFECT_HOME"] == str(tmp_path.resolve() / ".cache" / "prefect")
    assert defaults["PREFECT_LOGGING_TO_API_ENABLED"] == "false"  # the temporary server stops with the process
    assert defaults["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    ignored = subprocess.run(["git", "check-ignore", "-q", ".cache/prefect/prefect.db"], cwd=ROOT).returncode
    assert ignored == 0
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")  # a real server: its logs go to it
    assert "PREFECT_LOGGING_TO_API_ENABLED" not in env.prefect_defaults(tmp_path)


def test_the_flows_set_the_prefect_home_before_prefect_starts(tmp_path):
    """Importing a flow sets Prefect's home to the project's before Prefect reads its settings."""
    (tmp_path / "params.yaml").write_text("{}\n")
    code = ("import flows.train; from prefect.settings import get_current_settings; "
            "print(get_current_settings().home)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**clean, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(tmp_path.resolve() / ".cache" / "prefect")
