"""A tiny project (bundled sample logs, cut down) in a temporary folder, for flow and DVC tests."""

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def make_project(dest: Path) -> Path:
    """params.yaml, dvc.yaml, price sheet and small logs (120 train, 60 val, 60 holdout, 30 test prompts)."""
    (dest / "data").mkdir(parents=True)
    src = ROOT / "samples" / "llmrouter_logs"
    for name, n in {"train": 120, "val": 60, "holdout": 60}.items():
        pd.read_parquet(src / f"{name}.parquet").head(n).to_parquet(dest / "data" / f"{name}.parquet", index=False)
    test = pd.read_parquet(src / "test.parquet")
    keep = test["prompt_id"].drop_duplicates().head(30)
    test[test["prompt_id"].isin(keep)].to_parquet(dest / "data" / "test.parquet", index=False)
    (dest / "configs" / "prices").mkdir(parents=True)
    shutil.copy(ROOT / "configs" / "prices" / "llmrouter_9models.yaml", dest / "configs" / "prices")
    shutil.copy(ROOT / "dvc.yaml", dest / "dvc.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["crossfit"]["cv"] = 3
    params["train"]["lambdas"] = [0, 7400]
    params["train"]["methods"] = ["best-single", "naive", "rm-softmax", "rm-interval"]
    (dest / "params.yaml").write_text(yaml.safe_dump(params))
    # dvc.yaml's code deps point into src/: give the copy a src/ so the DAG resolves
    shutil.copytree(ROOT / "src" / "causal_router", dest / "src" / "causal_router",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("CAUSAL_ROUTER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return make_project(tmp_path / "project")


@pytest.fixture(scope="session")
def prefect_harness():
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from prefect.testing.utilities import prefect_test_harness

    # a loaded machine can take minutes to start the server: the same setting as the flows'
    timeout = int(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"])
    with prefect_test_harness(server_startup_timeout=timeout):
        yield


@pytest.fixture
def another_project(tmp_path):
    """A second copy of the same tiny project (e.g. to run the flow beside dvc repro)."""
    return make_project(tmp_path / "another")
