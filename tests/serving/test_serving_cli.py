"""The CLI side of the service: `route` on registered models and stdin, `serve` refusing bad input,
and the retrain flow's ingest task."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from causal_router.cli import app
from tests.serving.conftest import URI
from tests.serving.tiny import MODELS, LinearRouter, TinyEncoder


@pytest.fixture
def tiny_encoder(monkeypatch):
    from causal_router.registry.pyfunc import RouterModel

    monkeypatch.setattr(RouterModel, "encoder", property(lambda self: TinyEncoder()))


def test_route_accepts_a_registered_model_and_prompts_on_stdin(registry, tiny_encoder, tmp_path):
    prompts = ["What is 2 + 2?", "Write a sonnet about routers.", "Translate 'cat' into French."]
    out = CliRunner().invoke(app, ["route", URI, "-", "--lam", "30", "--cache-dir", str(tmp_path / "cache")],
                             input="\n".join(prompts) + "\n\n")
    assert out.exit_code == 0, out.output
    lines = [line.split("\t") for line in out.output.strip().splitlines()]
    expected = np.asarray(MODELS)[LinearRouter().scores(TinyEncoder().encode(prompts), 30.0).argmax(1)]
    assert [x[0] for x in lines] == list(expected) and [x[2] for x in lines] == prompts
    assert all(float(x[1]) == 1.0 for x in lines)  # explore 0: the router's choice
    explored = CliRunner().invoke(app, ["route", URI, *prompts, "--lam", "30", "--explore", "0.5", "--seed", "1",
                                        "--cache-dir", str(tmp_path / "cache")])
    assert explored.exit_code == 0 and all(0 < float(x.split("\t")[1]) < 1 for x in explored.output.splitlines())


def test_route_names_an_unknown_registered_model(registry, tmp_path):
    out = CliRunner().invoke(app, ["route", "models:/no-such-router@champion", "hi", "--lam", "1"])
    assert out.exit_code == 1 and "no-such-router" in out.output and "Traceback" not in out.output


@pytest.mark.parametrize("args, words", [(["--model-uri", "runs:/abc"], "models:/NAME@ALIAS"),
                                         (["--workers", "0"], "--workers")])
def test_serve_refuses_bad_options(args, words):
    out = CliRunner().invoke(app, ["serve", *args])
    assert out.exit_code == 1 and words in out.output


def test_retrain_flow_ingests_the_decision_log(tmp_path, monkeypatch):
    from causal_router.serving.store import DecisionStore
    from flows.retrain import ingest
    from tests.serving.test_ingest import fill

    (tmp_path / "data").mkdir()
    (tmp_path / "params.yaml").write_text("data: {dir: data}\ningest: {holdout_fraction: 0.5}\n")
    monkeypatch.delenv("CAUSAL_ROUTER_DECISIONS_URI", raising=False)
    fill(DecisionStore(f"sqlite:///{tmp_path / 'decisions' / 'decisions.db'}"), 8)
    out = ingest.fn("params.yaml", str(tmp_path))
    assert out["added"] == 8
    assert len(pd.read_parquet(tmp_path / "data" / "holdout.parquet")) == 4
    assert ingest.fn("params.yaml", str(tmp_path))["added"] == 0


def test_serve_finds_the_project_from_any_folder_inside_it(tmp_path, monkeypatch):
    """From a subfolder, serve reads the project's params.yaml and serves from the project (its mlruns/,
    decisions/ and relative price sheet), as every other command finds it, rather than creating
    ./mlruns/mlflow.db where it was started."""
    import causal_router.serving.api as api

    project = tmp_path / "project"
    sub = project / "notebooks" / "deep"
    sub.mkdir(parents=True)
    (project / "params.yaml").write_text("serve:\n  explore: 0.3\n  docs: token\n")
    seen = {}
    monkeypatch.setattr(api, "serve", lambda settings, **kw: seen.update(settings=settings, **kw))
    monkeypatch.chdir(sub)
    out = CliRunner().invoke(app, ["serve", "--port", "8123"])
    assert out.exit_code == 0, out.output
    s = seen["settings"]
    assert s.root == str(project.resolve()) and s.explore == 0.3 and s.docs == "token" and seen["port"] == 8123
    assert not (sub / "mlruns").exists() and not (sub / "decisions").exists()
