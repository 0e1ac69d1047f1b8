"""``causal-router loop`` end to end on a few hundred prompts of the bundled sample: the flow, the
decision log, ingest, every round registered with its lineage, the registry's gate."""

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from causal_router.cli import app

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ["dataset", "seed", "arm", "explore", "round", "lam", "n_logged", "deployed_utility", "test_utility",
           "cumulative_regret", "promoted"]


@pytest.fixture
def table(tmp_path):
    t = pd.read_parquet(ROOT / "samples" / "llmrouter_9models_sample.parquet")
    keep = t["prompt_id"].drop_duplicates().head(300)
    path = tmp_path / "sample300.parquet"
    t[t["prompt_id"].isin(keep)].to_parquet(path, index=False)
    return path


@pytest.mark.slow
def test_small_loop_end_to_end(table, tmp_path, monkeypatch, prefect_harness):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.chdir(ROOT)  # params.yaml's price sheet prices the sample's models
    out = tmp_path / "loop"
    res = CliRunner().invoke(app, ["loop", str(table), "--rounds", "2", "--batch", "100", "--incumbent",
                                   "cost-biased:3", "--explore", "0.1", "--lam", "7400", "--seed", "0", "--out",
                                   str(out), "--encoder", "tests.serving.tiny:TinyEncoder"])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out / "loop.csv")
    assert list(df.columns) == COLUMNS and list(df["round"]) == [0, 1]
    assert list(df["n_logged"]) == [100, 200] and bool(df["promoted"].iloc[0])
    # round 1 was routed by the service's code: 100 decisions with propensities and feedback
    from causal_router.serving.store import DecisionStore

    store = DecisionStore(f"sqlite:///{out / 'decisions' / 'decisions.db'}")
    assert store.count("decisions") == 100 and store.count("feedback") == 100 and store.count("ingested") == 100
    store.close()
    # every round's router is registered with the data version it was trained on
    from mlflow import MlflowClient

    from causal_router.registry.tracking import configure

    configure(out)
    c = MlflowClient()
    versions = sorted(c.search_model_versions("name='causal-router-endpoint-7400'"), key=lambda v: int(v.version))
    assert [v.tags["loop.round"] for v in versions] == ["0", "1"]
    md5 = [v.tags["data.logs.md5"] for v in versions]
    assert all(len(m) >= 32 for m in md5) and md5[0] != md5[1]  # round 1 trained on the grown logs
    champion = c.get_model_version_by_alias("causal-router-endpoint-7400", "champion")
    assert str(champion.version) == ("2" if df["promoted"].iloc[1] else "1")


def test_loop_rejects_bad_options(table, tmp_path):
    res = CliRunner().invoke(app, ["loop", str(table), "--rounds", "50", "--batch", "100", "--lam", "7400",
                                   "--out", str(tmp_path / "o"), "--encoder", "tests.serving.tiny:TinyEncoder"])
    assert res.exit_code != 0 and "need 5000 streamed prompts" in res.output
    res = CliRunner().invoke(app, ["loop", str(table), "--rounds", "2", "--batch", "10", "--lam", "7400",
                                   "--explore", "2", "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "explore must be a number in [0, 1]" in res.output
