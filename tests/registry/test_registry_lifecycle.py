"""The registry over time: descriptions, the gate's own run, retention of never-champion versions,
and rollback to the previous champion with a recorded reason."""

import mlflow
import pytest
from typer.testing import CliRunner

from causal_router.registry import lifecycle
from causal_router.registry.promote import promote
from causal_router.registry.pyfunc import log_router_model

NAME = "causal-router-interval"


def add_version(routerset_dir, method="rm-interval", tags=None, alias=None):
    with mlflow.start_run():
        info = log_router_model(routerset_dir, f"router-{method}", method, registered_model_name=NAME)
    v = str(info.registered_model_version)
    c = mlflow.MlflowClient()
    for k, val in (tags or {}).items():
        c.set_model_version_tag(NAME, v, k, val)
    if alias:
        c.set_registered_model_alias(NAME, alias, v)
    return v


def promoted(ts):
    return {"promotion.decision": "promoted", "promotion.timestamp": ts}


def test_register_routers_describes_each_model(store, routerset_dir):
    from causal_router.registry.runs import log_training_run, register_routers

    run_id = log_training_run(routerset_dir, [], {"a": 1})
    versions = register_routers(run_id, routerset_dir, [1000.0])
    c = mlflow.MlflowClient()
    for name in versions:
        desc = c.get_registered_model(name).description
        assert "quality - lambda * cost" in desc and "models:/" + name in desc


def test_training_run_records_its_logs_as_inputs(store, routerset_dir, problem, tmp_path):
    from causal_router.registry.runs import log_training_run

    path = tmp_path / "train.parquet"
    problem["train"].logs.to_parquet(path)
    run_id = log_training_run(routerset_dir, [], {}, datasets={"train": str(path)})
    inputs = mlflow.get_run(run_id).inputs.dataset_inputs
    assert [i.dataset.name for i in inputs] == ["train"]
    assert inputs[0].tags[0].value == "training" and str(path.resolve()) in inputs[0].dataset.source


def test_retention_keeps_champions_aliases_and_the_newest_k(store, routerset_dir):
    v1 = add_version(routerset_dir, tags=promoted("2026-01-01T00:00:00+00:00"), alias="champion")
    never = [add_version(routerset_dir, "best-single") for _ in range(3)]
    last = add_version(routerset_dir, alias="challenger")
    deleted = lifecycle.prune_versions(NAME, keep=1)
    assert deleted == never[:2]
    left = {str(v.version) for v in mlflow.MlflowClient().search_model_versions(f"name='{NAME}'")}
    assert left == {v1, never[2], last}
    assert lifecycle.prune_versions(NAME, keep=1) == []
    with pytest.raises(ValueError):
        lifecycle.prune_versions(NAME, keep=-1)


def test_rollback_restores_the_previous_champion_with_its_reason(store, routerset_dir):
    from causal_router.cli import app

    v1 = add_version(routerset_dir, tags=promoted("2026-01-01T00:00:00+00:00"))
    add_version(routerset_dir, "best-single")  # never champion: not a rollback target
    v3 = add_version(routerset_dir, tags=promoted("2026-02-01T00:00:00+00:00"), alias="champion")
    out = CliRunner().invoke(app, ["rollback", NAME, "--reason", "p95 latency regression"])
    assert out.exit_code == 0, out.output
    assert f"v{v3} -> v{v1}" in out.output
    c = mlflow.MlflowClient()
    assert str(c.get_model_version_by_alias(NAME, "champion").version) == v1
    assert c.get_model_version(NAME, v3).tags["rollback.demoted"] == "true"
    assert c.get_model_version(NAME, v3).tags["rollback.reason"] == "p95 latency regression"
    assert c.get_model_version(NAME, v1).tags["rollback.restored_from"] == v3
    # nothing before v1: a clear error, the champion stays
    again = CliRunner().invoke(app, ["rollback", NAME, "--reason", "again"])
    assert again.exit_code == 1 and "no earlier champion" in again.output
    assert str(c.get_model_version_by_alias(NAME, "champion").version) == v1
    with pytest.raises(lifecycle.RollbackError):
        lifecycle.rollback(NAME, "  ")


def test_rollback_without_champion_fails_clearly(store, routerset_dir):
    add_version(routerset_dir, alias="challenger")
    with pytest.raises(lifecycle.RollbackError, match="no champion"):
        lifecycle.rollback(NAME, "bad release")


def test_promotion_run_links_decisions_and_versions(store, routerset_dir, problem, tmp_path):
    v = add_version(routerset_dir, alias="challenger")
    d = promote(NAME, problem["holdout"].logs, problem["holdout"].X)
    path = tmp_path / "holdout.parquet"
    problem["holdout"].logs.to_parquet(path)
    run_id = lifecycle.log_promotion_run([d], {"alpha": 0.05}, path)
    run = mlflow.get_run(run_id)
    assert run.data.tags[f"version.{NAME}"] == v and run.data.tags["decisions.promoted"] == "1"
    assert run.data.metrics[f"promoted/{NAME}"] == 1.0 and f"challenger_dr/{NAME}" in run.data.metrics
    assert run.data.params["alpha"] == "0.05"
    assert [i.dataset.name for i in run.inputs.dataset_inputs] == ["holdout"]
    assert mlflow.MlflowClient().get_model_version(NAME, v).tags["promotion.run_id"] == run_id
