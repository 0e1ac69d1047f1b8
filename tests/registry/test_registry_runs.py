"""Training runs: params, per-lambda metrics at lambda steps, reports as artifacts; registration
creates the endpoint and interval models with the challenger alias and the lineage tags."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest

from causal_router.registry.pyfunc import features_frame
from causal_router.registry.runs import (
    INTERVAL_NAME,
    endpoint_name,
    flatten_params,
    format_lambda,
    log_training_run,
    metric_batches,
    register_routers,
)

LAMS = [0.0, 1000.0, 2000.0]
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4"
       b"\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82")


def records():
    out = []
    for method, base in (("rm-interval", 0.8), ("best-single", 0.5)):
        for lam in LAMS:
            out.append({"method": method, "lambda": lam, "utility": base - lam * 1e-4,
                        "regret": 0.9 - base + lam * 1e-5, "accuracy": base, "cost": 2e-4})
    return out


@pytest.fixture
def run_id(store, routerset_dir, tmp_path):
    plot = tmp_path / "figure.png"
    plot.write_bytes(PNG)
    params = {"cv": 5, "clip": 0.01, "rm-softmax": {"tau": 1.0, "epochs": 3}, "note": "x" * 7000, "none": None}
    return log_training_run(routerset_dir, records(), params, {"git.commit": "abc123", "data.logs.md5": "f" * 32},
                            plots={"utility": plot}, run_name="train")


def test_metrics_logged_per_lambda_step(run_id):
    c = mlflow.MlflowClient()
    hist = c.get_metric_history(run_id, "regret/rm-interval")
    assert sorted(m.step for m in hist) == [0, 1000, 2000]
    by_step = {m.step: m.value for m in hist}
    assert by_step[1000] == pytest.approx(0.1 + 1000 * 1e-5)
    run = c.get_run(run_id)
    assert run.data.metrics["utility/best-single/mean"] == pytest.approx(np.mean([0.5 - x * 1e-4 for x in LAMS]))
    assert {"utility/rm-interval", "accuracy/best-single", "cost/rm-interval"} <= set(run.data.metrics)
    assert any(k.startswith("train_seconds/") for k in run.data.metrics)


def test_params_tags_and_artifacts(run_id, routerset):
    c = mlflow.MlflowClient()
    run = c.get_run(run_id)
    p = run.data.params
    assert p["cv"] == "5" and p["rm-softmax.tau"] == "1.0" and p["none"] == ""
    assert len(p["note"]) <= 6000 and p["note"].endswith("...")
    assert p["routers.models"] == ",".join(routerset.models)
    assert run.data.tags["git.commit"] == "abc123"
    arts = {a.path for a in c.list_artifacts(run_id)}
    assert {"evaluation", "diagnostics", "plots", "routerset"} <= arts
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="evaluation/records.json")
    assert json.loads(Path(local).read_text()) == records()
    clip = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="diagnostics/clip_report.json")).read_text())
    assert clip[0]["model"] == "model-0" and "ess" in clip[0]
    assert [a.path for a in c.list_artifacts(run_id, "plots")] == ["plots/utility.png"]


def test_register_routers_names_alias_and_tags(run_id, routerset_dir, routerset, problem):
    tags = {"git.commit": "abc123", "data.logs.md5": "f" * 32}
    versions = register_routers(run_id, routerset_dir, tags=tags)
    names = [endpoint_name(x) for x in LAMS] + [INTERVAL_NAME]
    assert versions == {n: "1" for n in names}
    assert endpoint_name(2000.0) == "causal-router-endpoint-2000"
    c = mlflow.MlflowClient()
    for n in names:
        mv = c.get_model_version_by_alias(n, "challenger")
        assert str(mv.version) == "1" and mv.run_id == run_id
        assert mv.tags["git.commit"] == "abc123" and mv.tags["data.logs.md5"] == "f" * 32
    assert c.get_model_version(INTERVAL_NAME, "1").tags["router.method"] == "rm-interval"
    ep = c.get_model_version(endpoint_name(2000.0), "1")
    assert ep.tags["router.method"] == "rm-softmax" and ep.tags["router.lambda"] == "2000"
    # an endpoint model serves its own lambda by default
    model = mlflow.pyfunc.load_model(f"models:/{endpoint_name(2000.0)}@challenger")
    X = problem["holdout"].X
    np.testing.assert_array_equal(model.predict(features_frame(X))["model_index"],
                                  routerset.get("rm-softmax").predict(X, 2000.0))
    # the run's params stay the training's: router configs differ per model and live in the models
    params = c.get_run(run_id).data.params
    assert "lam" not in params and "method" not in params and params["cv"] == "5"
    # a second registration makes new versions and moves the challenger alias
    again = register_routers(run_id, routerset_dir, lambdas=[1000.0])
    assert again == {endpoint_name(1000.0): "2", INTERVAL_NAME: "2"}
    assert str(c.get_model_version_by_alias(INTERVAL_NAME, "challenger").version) == "2"


def test_register_refuses_lambdas_off_the_grid(store, routerset_dir):
    with pytest.raises(ValueError, match="not on the router set's grid"):
        register_routers("unused", routerset_dir, lambdas=[123.0])


def test_helpers():
    assert format_lambda(3700.0) == "3700" and format_lambda(0.5) == "0p5" and format_lambda(12.25) == "12p25"
    assert flatten_params({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": "x"}) == {"a.b": "1", "a.c.d": "[1, 2]", "e": "x"}
    rows = metric_batches([{"method": "m", "lambda": 2.6, "utility": 1.0, "regret": float("nan")}])
    assert ("utility/m", 1.0, 3) in rows and not any(k.startswith("regret") for k, _, _ in rows)
    with pytest.raises(ValueError, match="method"):
        metric_batches([{"lambda": 1.0}])


def test_numpy_values_in_records_are_logged(store, routerset_dir):
    recs = [{"method": "rm-interval", "lambda": np.float32(1000.0), "utility": np.float32(0.5),
             "regret": np.float64(0.1), "accuracy": np.int64(1), "cost": 1e-4}]
    run_id = log_training_run(routerset_dir, recs, {"grid": np.array([0.0, 1.0])}, {})
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="evaluation/records.json")
    assert json.loads(Path(local).read_text())[0]["utility"] == 0.5
    hist = mlflow.MlflowClient().get_metric_history(run_id, "utility/rm-interval")
    assert [m.step for m in hist] == [1000]


def test_an_unchanged_training_is_not_registered_again(store, routerset_dir, caplog):
    """The same data, code and params as the newest versions (their lineage.content_hash): nothing is
    registered, one line says so, and the existing versions come back. Other data, or other params,
    register new versions."""
    lineage = {"git.commit": "abc123", "data.logs.md5": "f" * 32, "data.embeddings.md5": "e" * 32 + ".dir"}
    params = {"cv": 5, "train": {"lambdas": LAMS}}
    first_run = log_training_run(routerset_dir, [], params, lineage)
    first = register_routers(first_run, routerset_dir, tags=lineage)
    c = mlflow.MlflowClient()
    content = {c.get_model_version(n, v).tags["lineage.content_hash"] for n, v in first.items()}
    assert len(content) == 1 and len(content.pop()) == 32
    again_run = log_training_run(routerset_dir, [], params, {**lineage, "git.commit": "def456"})
    with caplog.at_level("INFO", logger="causal_router.registry.runs"):
        again = register_routers(again_run, routerset_dir, tags={**lineage, "git.commit": "def456"})
    assert again == first  # no new version of any name
    lines = [r.getMessage() for r in caplog.records if "not registered again" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert all(len(c.search_model_versions(f"name='{n}'")) == 1 for n in first)
    assert json.loads(c.get_run(again_run).data.tags["registration.skipped_identical"]) == first
    # other data: new versions, the challenger alias moves
    other = {**lineage, "data.logs.md5": "0" * 32}
    new = register_routers(log_training_run(routerset_dir, [], params, other), routerset_dir, tags=other)
    assert set(new.values()) == {"2"}
    assert str(c.get_model_version_by_alias(INTERVAL_NAME, "challenger").version) == "2"
    # other params on the same data: new versions
    changed = register_routers(log_training_run(routerset_dir, [], {**params, "cv": 3}, other), routerset_dir,
                               tags=other)
    assert set(changed.values()) == {"3"}
    # no data hash recorded: nothing to compare, always registered
    bare = register_routers(log_training_run(routerset_dir, [], params), routerset_dir, tags={"git.commit": "x"})
    assert set(bare.values()) == {"4"}
