"""Fixtures for the registry tests: one SQLite MLflow database built per session and copied per
test, tiny routers trained once on synthetic logs, held-out logs with known propensities."""

import os
import shutil

import numpy as np
import pytest
import torch

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

LAMS = [0.0, 1000.0, 2000.0]
SMALL = dict(epochs=3, hidden=16, batch_size=128)


@pytest.fixture(scope="session")
def template_db(tmp_path_factory):
    """An initialised, empty MLflow SQLite database (creating one takes seconds; copying it, none)."""
    import mlflow

    root = tmp_path_factory.mktemp("mlflow-template")
    (root / "mlruns").mkdir()
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    mlflow.MlflowClient(uri, uri).search_experiments()  # creates the tables
    mlflow.MlflowClient(uri, uri).search_registered_models()
    return root / "mlruns" / "mlflow.db"


@pytest.fixture
def store(tmp_path, template_db, monkeypatch):
    """A fresh project store under ``tmp_path`` (copied database), configured as the current one."""
    import mlflow

    from causal_router.registry import tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.delenv(tracking.EXPERIMENT_ENV, raising=False)
    (tmp_path / "mlruns").mkdir()
    shutil.copy(template_db, tmp_path / "mlruns" / "mlflow.db")
    tracking.configure(tmp_path)
    yield tmp_path
    while mlflow.active_run() is not None:
        mlflow.end_run()
    tracking._state.update(uri=None, experiment_id=None)


@pytest.fixture(scope="session")
def problem():
    """Synthetic logs (d=4, K=3) split into train / val / holdout."""
    from causal_router.data.synthetic import make_synthetic

    s = make_synthetic(n=1400, d=4, n_models=3, confounding=2.0, separation=4.0, seed=3)
    return {"all": s, "train": s.subset(np.arange(500)), "val": s.subset(np.arange(500, 700)),
            "holdout": s.subset(np.arange(700, 1400))}


@pytest.fixture(scope="session")
def routerset_dir(problem, tmp_path_factory):
    """A saved RouterSet with random, best-single, rm-softmax and rm-interval routers on LAMS."""
    from causal_router.policy.data import build_routing_data
    from causal_router.policy.routerset import RouterSet
    from causal_router.policy.training import fit_routers

    tr, va = problem["train"], problem["val"]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = build_routing_data(tr.logs, tr.X, va.logs, va.X, models=problem["all"].models, propensity="logged")
        routers, seconds = fit_routers(data, LAMS, methods=["random", "best-single", "rm-softmax", "rm-interval"],
                                       params={"rm-softmax": SMALL, "random": {"random_state": 0}})
    finally:
        torch.set_num_threads(before)
    meta = {"train_seconds": seconds, "clip_report": data.clip_report.to_records(), "tokens_per_char": None}
    return RouterSet(list(problem["all"].models), LAMS, routers, "synthetic-d4", meta).save(
        tmp_path_factory.mktemp("routers") / "set")


@pytest.fixture(scope="session")
def routerset(routerset_dir):
    from causal_router.policy.routerset import RouterSet

    return RouterSet.load(routerset_dir)
