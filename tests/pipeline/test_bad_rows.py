"""Bad rows through the pipeline: quarantined with reasons, and training proceeds on the rest (issues 8 and 11)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from typer.testing import CliRunner

from causal_router.cli import app


def cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def test_infinite_cost_and_unknown_model_are_quarantined_then_crossfit_runs(project, monkeypatch):
    monkeypatch.chdir(project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["validate"]["models"] is None and params["crossfit"]["prices"]  # the case that crashed
    logs = pd.read_parquet("data/train.parquet")
    logs.loc[3, "cost"] = np.inf
    logs.loc[5, "model"] = "a-model-outside-the-price-sheet"
    logs.to_parquet("data/train.parquet", index=False)
    bad = {logs.loc[3, "prompt_id"]: "cost_finite", logs.loc[5, "prompt_id"]: "model_in_set"}

    # causal-router validate (with the pipeline's price sheet) names the same checks
    refused = cli("validate", "data/train.parquet", "--kind", "logs", "--prices", params["crossfit"]["prices"])
    assert refused.exit_code == 1 and "cost_finite" in refused.output and "model_in_set" in refused.output

    # dvc's validate stage quarantines both rows, with reasons, and keeps every other row
    assert cli("stage", "validate", "--params", "params.yaml").exit_code == 0
    q = pd.read_parquet("artifacts/validation/train/quarantine.parquet")
    assert dict(zip(q["prompt_id"], q["reason"])) == bad
    valid = pd.read_parquet("artifacts/validation/train/valid.parquet")
    assert len(valid) + len(q) == len(logs)
    report = json.loads(Path("artifacts/validation/train/report.json").read_text())
    assert {r["name"] for r in report["results"] if not r["success"] and r["severity"] == "error"} == set(bad.values())

    # the stages after it train on the rest instead of crashing in cross-fitting
    assert cli("stage", "embed", "--params", "params.yaml").exit_code == 0
    result = cli("stage", "crossfit", "--params", "params.yaml")
    assert result.exit_code == 0, result.output
    meta = json.loads(Path("artifacts/crossfit/meta.json").read_text())
    assert meta["n_train"] == len(valid)

