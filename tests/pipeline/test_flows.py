"""End to end: the train flow registers challengers with lineage tags; the promote flow gates them."""

import json

import mlflow
import pytest
from mlflow import MlflowClient

from flows.promote import promote_flow
from flows.train import train_flow

pytestmark = pytest.mark.slow  # each test runs the whole train flow


@pytest.fixture
def trained(project, prefect_harness):
    result = train_flow("params.yaml", str(project))
    mlflow.set_tracking_uri(f"sqlite:///{project}/mlruns/mlflow.db")
    return project, result


def test_train_flow_registers_challengers_with_lineage(trained):
    project, result = trained
    names = {"causal-router-interval", "causal-router-endpoint-0", "causal-router-endpoint-7400"}
    assert set(result["versions"]) == names
    client = MlflowClient()
    for name in names:
        mv = client.get_model_version_by_alias(name, "challenger")
        assert mv.tags["run_id"] == result["run_id"]
        assert len(mv.tags["data.logs.md5"]) >= 32 and mv.tags["data.logs.path"] == "data"
        assert "git.commit" in mv.tags
    run = client.get_run(result["run_id"])
    assert "utility/rm-softmax/mean" in run.data.metrics
    logged = {a.path for a in client.list_artifacts(result["run_id"], "validation")}
    assert {"validation/train", "validation/val"} <= logged  # the data checks behind the run
    assert {a.path for a in client.list_artifacts(result["run_id"], "plots")} >= {"plots/utility.png",
                                                                                   "plots/frontier.png"}
    # the flow's outputs exist where dvc.yaml says the stages put them
    for path in ("artifacts/routers/manifest.json", "artifacts/metrics.json", "artifacts/summary.json",
                 "artifacts/crossfit/clip_report.json", "artifacts/embeddings/train.npy",
                 "artifacts/validation/train/quarantine.parquet"):
        assert (project / path).exists(), path
    records = json.loads((project / "artifacts/metrics.json").read_text())
    assert {"oracle", "rm-softmax", "rm-interval"} <= {r["method"] for r in records}


def test_promote_flow_sets_first_champion_then_keeps_one(trained):
    project, _ = trained
    first = promote_flow("params.yaml", str(project), ["causal-router-interval"])
    assert first[0].promoted and first[0].decision == "promoted"
    client = MlflowClient()
    champ = client.get_model_version_by_alias("causal-router-interval", "champion")
    assert champ.tags["promotion.decision"] == "promoted"
    # the challenger is now the champion: running the gate again leaves a champion in place
    again = promote_flow("params.yaml", str(project), ["causal-router-interval"])
    assert not again[0].promoted
    assert client.get_model_version_by_alias("causal-router-interval", "champion").version == champ.version
    model = mlflow.pyfunc.load_model("models:/causal-router-interval@champion")
    out = model.predict({"prompt": ["What is 2 + 2?", "Translate 'cat' into French."]}, params={"lam": 3700.0})
    assert len(out) == 2 and set(out["model"]) <= set(json.loads(
        (project / "artifacts/routers/manifest.json").read_text())["models"])


def test_interrupted_run_resumes_from_cache(trained, monkeypatch):
    """A second run with unchanged inputs reuses the cached stage results (no re-embedding)."""
    project, _ = trained
    from causal_router.pipeline import stages

    def boom(*a, **k):
        raise AssertionError("embed stage re-ran despite the cache")

    monkeypatch.setattr(stages, "embed_stage", boom)
    monkeypatch.setattr(stages, "crossfit_stage", boom)
    result = train_flow("params.yaml", str(project), register_models=False)
    assert result["records"]


def test_retrain_deployment_runs_on_the_declared_schedule():
    """The cron of `flow.serve` and of infra/prefect.yaml agree, and the deployment targets the retrain flow."""
    from pathlib import Path

    import yaml

    from flows.retrain import CRON, retrain_flow

    deployment = retrain_flow.to_deployment(name="nightly-retrain", cron=CRON)
    assert deployment.schedules[0].schedule.cron == CRON
    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "infra" / "prefect.yaml").read_text())
    nightly = next(d for d in spec["deployments"] if d["name"] == "nightly-retrain")
    assert nightly["schedules"][0]["cron"] == CRON
    assert nightly["entrypoint"] == "flows/retrain.py:retrain_flow"


@pytest.mark.slow
@pytest.mark.parametrize("damaged", ["artifacts/embeddings/train.npy", "artifacts/crossfit/routing_data.joblib"])
def test_a_damaged_output_is_rebuilt(trained, damaged):
    """A truncated stage output is not reported as Cached: the stage reruns and the flow succeeds."""
    from causal_router.hashing import file_md5

    project, _ = trained
    path = project / damaged
    good = file_md5(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    result = train_flow("params.yaml", str(project), register_models=False)
    assert result["records"] and file_md5(path) == good


@pytest.mark.slow
def test_an_edit_to_causal_code_recomputes_crossfit_not_validation(trained, monkeypatch):
    """Editing a function body in causal/ changes the crossfit stage's cache key (not validate's or embed's)."""
    import shutil

    from causal_router.pipeline import caching, stages

    project, _ = trained
    pkg = project / "pkg" / "causal_router"
    shutil.copytree(caching.PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(caching, "PACKAGE", pkg)
    train_flow("params.yaml", str(project), register_models=False)  # cached under the copy's digests
    scores = pkg / "causal" / "scores.py"
    scores.write_text(scores.read_text().replace("return 1.0 / np.maximum(logged_propensity, clip)",
                                                 "return 1.0 / np.maximum(logged_propensity, clip)  # edited"))
    ran = []

    def spy(name):
        real = getattr(stages, name)

        def wrapper(*a, **k):
            ran.append(name)
            return real(*a, **k)
        return wrapper

    for name in ("validate_stage", "embed_stage", "crossfit_stage"):
        monkeypatch.setattr(stages, name, spy(name))
    assert train_flow("params.yaml", str(project), register_models=False)["records"]
    assert ran == ["crossfit_stage"]


@pytest.mark.slow
def test_a_second_flow_waits_for_the_first(trained):
    """Concurrent train flows on one artifact folder run one after the other (a file lock)."""
    import threading
    import time

    from filelock import FileLock

    project, _ = trained
    lock = FileLock(str(project / "artifacts" / ".train.lock"))
    metrics = project / "artifacts" / "metrics.json"
    metrics.unlink()
    done = {}
    with lock:  # a first flow holding the folder
        worker = threading.Thread(target=lambda: done.update(train_flow("params.yaml", str(project),
                                                                        register_models=False)))
        worker.start()
        time.sleep(3)
        assert worker.is_alive() and not metrics.exists()  # waiting, having written nothing
    worker.join(timeout=600)
    assert done["records"] and metrics.exists()
