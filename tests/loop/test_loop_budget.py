"""``causal-router loop --budget``: the service's controller holds a spend target in the loop."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from causal_router.cli import app
from causal_router.loop.budget import Budget, best_model, budget_grid, budget_usd, check_fraction
from causal_router.loop.rounds import BUDGET_COLUMNS, loop_nuisances, run_rounds
from causal_router.loop.stream import make_stream
from tests.loop.world import HIDDEN, LAM, hidden_world


@pytest.fixture(scope="module")
def world():
    return hidden_world(n=1500)


def test_budget_is_a_fraction_of_the_best_models_cost(world):
    ff, _, _ = world
    name, cost = best_model(ff)
    assert name == HIDDEN  # the highest mean quality
    assert budget_usd(ff, 0.25) == pytest.approx(0.25 * ff.costs[:, list(ff.models).index(HIDDEN)].mean())
    assert budget_grid(100.0) == [0.0, 50.0, 100.0, 200.0, 500.0, 1000.0]
    for bad in (0, -0.2, float("nan"), float("inf"), "x"):
        with pytest.raises(ValueError, match="--budget must be"):
            check_fraction(bad)


def test_the_loop_holds_its_spend_and_logs_the_lambdas(world, tmp_path):
    """The naive router (fast) under the service's controller: the spend after a warm-up is near the
    budget although the cold start overspends, the lambdas move, and every decision in the decision
    log carries the lambda it was served at and its propensity."""
    from causal_router.serving.store import DecisionStore

    ff, X, prices = world
    s = make_stream(ff, X, rounds=4, batch=300, lam=LAM, seed=0)
    b = Budget(budget_usd(ff, 0.2), budget_grid(LAM), "online", gain=0.02)
    uri = f"sqlite:///{tmp_path / 'decisions.db'}"
    recs = run_rounds(s, 0.05, method="naive", gated=False, arm="explore-naive", nuisances=loop_nuisances(0, cv=2),
                      prices=prices, workdir=tmp_path, store_uri=uri, budget=b)
    assert set(BUDGET_COLUMNS) <= set(recs[-1]) and recs[0]["spend"] is None
    trace = pd.DataFrame(b.trace)
    assert len(trace) == 900  # rounds 1-3, one decision at a time
    ratio = trace["cost"].iloc[200:].mean() / b.usd
    assert 0.85 < ratio < 1.15, ratio
    assert trace["lam"].nunique() > 100 and trace["lam"].max() > 5 * trace["lam"].min() + 1
    store = DecisionStore(uri)
    d = store.frame("decisions")
    store.close()
    assert len(d) == 900
    assert np.allclose(d["lam"].to_numpy(float), trace["lam"].to_numpy(float))
    assert d["propensity"].between(0, 1, inclusive="right").all() and d["propensities"].notna().all()
    # the ingested logs keep each decision's propensity (the DR weights of the next training)
    logs = pd.concat([pd.read_parquet(tmp_path / "data" / f) for f in ("train.parquet", "holdout.parquet")])
    served = logs.merge(d, left_on="prompt_id", right_on="decision_id", suffixes=("", "_d"))
    assert len(served) > 700 and np.allclose(served["propensity"], served["propensity_d"])


def test_a_fixed_lambda_does_not_move(world):
    ff, X, prices = world
    s = make_stream(ff, X, rounds=2, batch=200, lam=LAM, seed=1)
    b = Budget(budget_usd(ff, 0.2), budget_grid(LAM), "fixed", lam=300.0)
    run_rounds(s, 0.05, method="naive", gated=False, nuisances=loop_nuisances(0, cv=2), prices=prices, budget=b)
    assert {t["lam"] for t in b.trace} == {300.0} and b.lam0 is not None


@pytest.mark.parametrize("bad", ["-1", "0", "nan", "inf"])
def test_cli_refuses_a_bad_budget_in_one_line(tmp_path, bad):
    table = tmp_path / "missing.parquet"  # never read: the budget is checked first
    res = CliRunner().invoke(app, ["loop", str(table), "--rounds", "2", "--batch", "10", "--lam", "100",
                                   "--out", str(tmp_path / "o"), "--budget", bad])
    assert res.exit_code != 0
    assert "--budget must be a finite number > 0" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1, res.output


def test_cli_refuses_a_budget_without_a_positive_lambda(tmp_path):
    res = CliRunner().invoke(app, ["loop", str(tmp_path / "t.parquet"), "--rounds", "2", "--batch", "10", "--lam",
                                   "0", "--out", str(tmp_path / "o"), "--budget", "0.4"])
    assert res.exit_code != 0 and "a budget needs --lam > 0" in res.output and "Traceback" not in res.output


@pytest.mark.slow
def test_cli_loop_under_a_budget_end_to_end(tmp_path, monkeypatch, prefect_harness):
    """``causal-router loop --budget``: the interval router registered and gated every round, each
    decision served at the controller's lambda, the trace and the records written."""
    from tests.loop.test_cli_loop import ROOT

    t = pd.read_parquet(ROOT / "samples" / "llmrouter_9models_sample.parquet")
    keep = t["prompt_id"].drop_duplicates().head(300)
    table = tmp_path / "sample300.parquet"
    t[t["prompt_id"].isin(keep)].to_parquet(table, index=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.chdir(ROOT)
    out = tmp_path / "loop"
    res = CliRunner().invoke(app, ["loop", str(table), "--rounds", "2", "--batch", "100", "--explore", "0.1",
                                   "--lam", "7400", "--out", str(out), "--encoder", "tests.serving.tiny:TinyEncoder",
                                   "--budget", "0.3"])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out / "loop.csv")
    assert list(df.columns[-4:]) == list(BUDGET_COLUMNS) and df["spend"].notna().sum() == 1
    trace = pd.read_csv(out / "budget_trace.csv")
    assert len(trace) == 100 and trace["lam"].between(0, 74000).all() and trace["lam"].nunique() > 1
    assert trace["propensity"].between(0, 1, inclusive="right").all()
    from mlflow import MlflowClient

    from causal_router.registry.tracking import configure

    configure(out)
    versions = MlflowClient().search_model_versions("name='causal-router-interval'")
    assert sorted(v.tags["loop.round"] for v in versions) == ["0", "1"]


def test_rebase_moves_the_operating_point_and_keeps_the_integral():
    from causal_router.serving.budget import BudgetController

    c = BudgetController(1.0, (0.0, 100.0), lam0=10.0, gain=0.1)
    for cost in (3.0, 3.0, 0.5):
        c.observe(cost)
    before = c.integral
    c.rebase(40.0)
    assert c.lam == pytest.approx(40.0) and c.integral == before
    c.observe(2.0)  # overspending still raises lambda from there
    assert c.lam > 40.0
