"""The loop under change (loop/scenarios.py, ``causal-router loop --scenario``): the world each round sees,
the new model's cold start through the service, partial feedback, and a clear error for a bad name."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from causal_router.loop.rounds import loop_nuisances, run_rounds
from causal_router.loop.scenarios import CHANGE_ROUND, SCENARIOS, Scenario, make_scenario
from causal_router.loop.stream import make_stream
from tests.loop.world import HIDDEN, LAM, hidden_world


@pytest.fixture(scope="module")
def world():
    return hidden_world(n=1000)


@pytest.fixture(scope="module")
def stream(world):
    ff, X, _ = world
    return make_stream(ff, X, rounds=5, batch=100, lam=LAM, seed=0)


def test_each_scenario_picks_its_model_and_changes_the_world_from_round_3(stream, world):
    _, _, prices = world
    assert SCENARIOS[0] == "none" and make_scenario("none", stream).world(stream, 4) is stream
    new = make_scenario("new-model", stream)
    assert new.changed == stream.models[int(stream.utility.mean(0).argmax())]
    assert new.changed not in new.pool(stream, CHANGE_ROUND - 1) and new.changed in new.pool(stream, CHANGE_ROUND)
    k = stream.models.index(new.changed)
    assert (new.start(stream).incumbent[:, k] == 0).all()
    np.testing.assert_allclose(new.start(stream).incumbent.sum(1), 1.0)
    price = make_scenario("price", stream)
    assert price.changed == HIDDEN  # the dearest
    h = stream.models.index(HIDDEN)
    np.testing.assert_allclose(price.world(stream, 3).ff.costs[:, h], stream.ff.costs[:, h] / 3)
    assert price.world(stream, 2).ff.costs is stream.ff.costs
    assert price.prices(prices, 3)[HIDDEN][0] == prices[HIDDEN][0] / 3 and price.prices(prices, 2) is prices
    deg = make_scenario("degrade", stream, HIDDEN)
    weak = stream.models.index(deg.weaker)
    assert deg.weaker != HIDDEN and np.isclose(stream.ff.scores[:, weak].mean(), stream.ff.scores.mean(0).min())
    np.testing.assert_array_equal(deg.world(stream, 3).ff.scores[:, h], stream.ff.scores[:, weak])
    np.testing.assert_array_equal(deg.world(stream, 3).ff.costs, stream.ff.costs)  # same name, same price


def test_partial_feedback_reports_30_percent_and_b_prefers_low_scores():
    rng = np.random.default_rng(0)
    scores = (rng.random(20000) < 0.6).astype(float)  # 40% low
    a = Scenario("partial-feedback-a").reported(scores, rng)
    b = Scenario("partial-feedback-b").reported(scores, rng)
    assert abs(a.mean() - 0.3) < 0.01 and abs(b.mean() - 0.3) < 0.01
    assert abs(a[scores < 0.5].mean() / a[scores >= 0.5].mean() - 1) < 0.1
    assert abs(b[scores < 0.5].mean() / b[scores >= 0.5].mean() - 3) < 0.3


def test_a_new_model_joins_at_round_3_with_its_cold_start_share(stream, world, tmp_path):
    """The hidden model is never served in rounds 0-2; from round 3 the service gives it at least its
    cold-start share, every logged propensity vector covers it and sums to 1, and the retrain takes it."""
    _, _, prices = world
    sc = make_scenario("new-model", stream)
    recs = run_rounds(stream, 0.1, method="naive", gated=False, arm="explore-naive", prices=prices,
                      nuisances=loop_nuisances(0, cv=2), workdir=tmp_path, scenario=sc, store_uri=None)
    share = [r["changed_model_share"] for r in recs]
    assert share[:CHANGE_ROUND] == [0.0] * CHANGE_ROUND and share[CHANGE_ROUND] >= 0.03
    logs = pd.concat([pd.read_parquet(tmp_path / "data" / f) for f in ("train.parquet", "holdout.parquet")])
    new = logs[logs["model"] == sc.changed]
    assert len(new) > 0 and (new["propensity"] >= 0.05 - 1e-12).all()
    import json

    for vec in logs["propensities"]:
        assert abs(sum(json.loads(vec).values()) - 1) < 1e-9
    assert all(abs(json.loads(v)[m] - p) < 1e-12 for m, p, v in zip(logs["model"], logs["propensity"],
                                                                      logs["propensities"]))


def test_partial_feedback_logs_only_the_reported_decisions(stream, world, tmp_path):
    _, _, prices = world
    full = run_rounds(stream, 0.1, method="naive", gated=False, prices=prices, nuisances=loop_nuisances(0, cv=2))
    part = run_rounds(stream, 0.1, method="naive", gated=False, prices=prices, nuisances=loop_nuisances(0, cv=2),
                      scenario=make_scenario("partial-feedback-b", stream))
    grown_full = full[-1]["n_logged"] - full[0]["n_logged"]
    grown_part = part[-1]["n_logged"] - part[0]["n_logged"]
    assert grown_full == 400 and 80 <= grown_part <= 160  # 30% of 400 decisions


def test_cli_refuses_an_unknown_scenario_in_one_line(tmp_path):
    from causal_router.cli import app

    res = CliRunner().invoke(app, ["loop", str(tmp_path / "t.parquet"), "--rounds", "2", "--batch", "10",
                                   "--lam", "1", "--out", str(tmp_path / "o"), "--scenario", "meteor"])
    assert res.exit_code != 0 and "unknown scenario 'meteor'" in res.output and "new-model" in res.output
    assert "Traceback" not in res.output


@pytest.mark.slow
def test_cli_loop_with_a_new_model_end_to_end(tmp_path, monkeypatch, prefect_harness):
    """``causal-router loop --scenario new-model`` through the flow and the registry: the new model is
    absent from rounds 0-2 and served from round 3; the records name it."""
    from pathlib import Path

    from causal_router.cli import app

    root = Path(__file__).resolve().parents[2]
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.chdir(root)  # params.yaml's price sheet prices the sample's models
    out = tmp_path / "loop"
    res = CliRunner().invoke(app, ["loop", str(root / "samples" / "llmrouter_9models_sample.parquet"), "--rounds", "4",
                                   "--batch", "100", "--explore", "0.1", "--lam", "7400", "--out", str(out),
                                   "--encoder", "tests.serving.tiny:TinyEncoder", "--scenario", "new-model"])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out / "loop.csv")
    assert list(df["round"]) == [0, 1, 2, 3] and set(df["scenario"]) == {"new-model"}
    assert list(df["changed_model_share"][:3]) == [0.0, 0.0, 0.0] and df["changed_model_share"].iloc[3] > 0
