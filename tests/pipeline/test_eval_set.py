"""params.yaml's data.eval_set through the pipeline stages (validate, embed, crossfit): the evaluation set
joins the outcome models when its file is there, and leaves nothing behind when it is gone."""

import json

import pandas as pd
from typer.testing import CliRunner

from causal_router.cli import app
from tests.pipeline.conftest import ROOT


def _stages(*names):
    for name in names:
        result = CliRunner().invoke(app, ["stage", name])
        assert result.exit_code == 0, result.output + repr(result.exception)
        yield result.output


def test_eval_set_joins_the_crossfit_and_leaves_no_trace_when_removed(project, monkeypatch):
    monkeypatch.chdir(project)
    meta = project / "artifacts" / "crossfit" / "meta.json"
    list(_stages("validate", "embed", "crossfit"))
    assert json.loads(meta.read_text())["n_scored"] == 0
    without = (project / "artifacts" / "crossfit" / "routing_data.joblib").read_bytes()

    # 20 prompts of the sample's full-feedback table that the train logs also hold, every model scored
    table = pd.read_parquet(ROOT / "samples" / "llmrouter_logs" / "test.parquet")
    ids = table["prompt_id"].drop_duplicates().head(20)
    table[table["prompt_id"].isin(ids)].to_parquet(project / "data" / "eval_set.parquet", index=False)
    out = "".join(_stages("validate", "embed", "crossfit"))
    assert "eval_set" in out
    n = int(table["prompt_id"].isin(ids).sum())
    assert json.loads(meta.read_text())["n_scored"] == n
    assert (project / "artifacts" / "embeddings" / "eval_set.npy").exists()
    assert (project / "artifacts" / "crossfit" / "routing_data.joblib").read_bytes() != without

    (project / "data" / "eval_set.parquet").unlink()
    list(_stages("validate"))
    assert not (project / "artifacts" / "validation" / "eval_set").exists()


def test_a_bad_eval_set_is_named_not_a_traceback(project, monkeypatch):
    monkeypatch.chdir(project)
    table = pd.read_parquet(ROOT / "samples" / "llmrouter_logs" / "test.parquet").head(18)
    table.drop(columns=["score"]).to_parquet(project / "data" / "eval_set.parquet", index=False)
    result = CliRunner().invoke(app, ["stage", "validate"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "eval_set.parquet" in result.output and "score" in result.output and "Traceback" not in result.output
