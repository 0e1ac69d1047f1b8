"""A registered version whose artifacts were deleted is named, with the missing path, by lineage and by loading."""

import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
import pytest
from typer.testing import CliRunner

from causal_router.errors import CausalRouterError, MissingArtifactError
from causal_router.registry.artifacts import check_artifacts, load_model, missing_artifacts
from causal_router.registry.lineage import describe, format_lineage
from causal_router.registry.promote import load_policy, promote
from causal_router.registry.pyfunc import log_router_model

NAME = "causal-router-interval"


def add_version(routerset_dir, method, alias):
    with mlflow.start_run():
        info = log_router_model(routerset_dir, f"router-{method}", method, registered_model_name=NAME)
    version = str(info.registered_model_version)
    mlflow.MlflowClient().set_registered_model_alias(NAME, alias, version)
    return version


def location(version) -> Path:
    uri = mlflow.MlflowClient().get_model_version_download_uri(NAME, version)
    return Path(unquote(urlparse(uri).path))


def test_deleted_champion_artifact_is_named_by_lineage_and_loading(store, routerset_dir):
    from causal_router.cli import app

    v = add_version(routerset_dir, "rm-interval", "champion")
    client = mlflow.MlflowClient()
    assert missing_artifacts(client, NAME, v)[1] == []
    assert describe(f"models:/{NAME}@champion", repo_root=store)["artifacts"]["status"] == "present"
    folder = location(v)
    shutil.rmtree(folder)

    uri = f"models:/{NAME}@champion"
    with pytest.raises(MissingArtifactError, match=rf"{NAME} version {v}: .*missing: {folder}"):
        describe(uri, repo_root=store)
    d = describe(uri, repo_root=store, check_artifacts=False)
    assert d["artifacts"]["status"] == "missing" and "MISSING" in format_lineage(d)
    out = CliRunner().invoke(app, ["lineage", uri, "--root", str(store)])
    assert out.exit_code == 1 and f"version {v}" in out.output and str(folder) in out.output
    assert "Traceback" not in out.output
    for load in (load_model, load_policy):  # MLflow alone says only "No such artifact: ''"
        with pytest.raises(MissingArtifactError, match=rf"version {v}: .*{folder}"):
            load(uri)
    assert issubclass(MissingArtifactError, (CausalRouterError, FileNotFoundError))


def test_a_partly_deleted_model_names_the_missing_part(store, routerset_dir):
    v = add_version(routerset_dir, "rm-interval", "champion")
    (routers,) = [p for p in (location(v) / "artifacts").iterdir() if p.is_dir()]  # the router set
    shutil.rmtree(routers)
    with pytest.raises(MissingArtifactError, match=rf"version {v}: .*missing: {routers}"):
        check_artifacts(mlflow.MlflowClient(), NAME, v)


def test_a_challenger_without_artifacts_never_becomes_champion(store, routerset_dir, problem):
    old = add_version(routerset_dir, "best-single", "champion")
    new = add_version(routerset_dir, "rm-interval", "challenger")
    shutil.rmtree(location(new))
    d = promote(NAME, problem["holdout"].logs, problem["holdout"].X)
    assert d.decision == "error" and not d.promoted
    assert f"version {new}" in d.reason and "MissingArtifactError" in d.reason
    assert str(mlflow.MlflowClient().get_model_version_by_alias(NAME, "champion").version) == old


def test_serve_and_route_name_a_deleted_artifact(store, routerset_dir, tmp_path):
    """The service's loader and `route models:/...` load through the same check as lineage."""
    from causal_router.cli import app
    from causal_router.serving.model import load_served

    v = add_version(routerset_dir, "rm-interval", "champion")
    shutil.rmtree(location(v))
    with pytest.raises(MissingArtifactError, match=rf"{NAME} version {v}"):
        load_served(f"models:/{NAME}@champion")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hello"}\n')
    r = CliRunner().invoke(app, ["route", f"models:/{NAME}@champion", str(prompts), "--lam", "0"])
    assert r.exit_code == 1 and f"version {v}" in r.output and "Traceback" not in r.output, r.output
