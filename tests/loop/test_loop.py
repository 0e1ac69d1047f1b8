"""The simulated deployment loop: the stream, rounds through the service's code."""

import numpy as np
import pandas as pd
import pytest

from causal_router.loop.rounds import loop_nuisances, run_rounds
from causal_router.loop.stream import LookupEncoder, make_stream, parse_incumbent
from tests.loop.world import HIDDEN, LAM, hidden_world

KEYS = {"seed", "arm", "explore", "round", "lam", "n_logged", "deployed_utility", "test_utility",
        "cumulative_regret", "promoted"}


@pytest.fixture(scope="module")
def world():
    return hidden_world(n=1000)


def explore_naive(stream, explore, **kw):
    """Rounds that retrain the naive router with exploration and deploy it without a gate."""
    return run_rounds(stream, explore, method="naive", gated=False, arm="explore-naive", **kw)


def test_stream_holds_out_test_and_cuts_seeded_rounds(world):
    ff, X, _ = world
    s = make_stream(ff, X, rounds=3, batch=100, lam=LAM, seed=0)
    rounds = [s.round_prompts(r) for r in range(3)]
    assert all(len(r) == 100 for r in rounds)
    assert len(np.unique(np.concatenate(rounds))) == 300  # disjoint
    assert not set(s.order) & set(s.test)  # the test prompts are never streamed
    assert len(s.test) == 200  # simulate's 20%
    assert np.array_equal(make_stream(ff, X, rounds=3, batch=100, lam=LAM, seed=0).order, s.order)
    assert not np.array_equal(make_stream(ff, X, rounds=3, batch=100, lam=LAM, seed=1).order, s.order)
    # the cost-biased incumbent all but ignores the dear hidden model
    assert s.incumbent[:, list(ff.models).index(HIDDEN)].mean() < 0.05
    with pytest.raises(ValueError, match="need 900 streamed prompts"):
        make_stream(ff, X, rounds=9, batch=100, lam=LAM, seed=0)


def test_incumbent_spec_is_checked():
    assert parse_incumbent("cost-biased:3") == ("cost-biased", 3.0)
    assert parse_incumbent("uniform") == ("uniform", None)
    with pytest.raises(ValueError, match="incumbent"):
        parse_incumbent("greedy")
    with pytest.raises(ValueError, match="number"):
        parse_incumbent("cost-biased:x")


def test_lookup_encoder_returns_the_tables_rows():
    X = np.arange(6, dtype=float).reshape(3, 2)
    enc = LookupEncoder(["a", "b", "c"], X)
    assert np.array_equal(enc.encode(["c", "a"]), X[[2, 0]])
    with pytest.raises(KeyError, match="not in the stream"):
        enc.encode(["zzz"])


def test_a_round_is_served_logged_and_ingested(world, tmp_path):
    """Round 1 goes through the service's decision log: one decision with its propensity and one
    feedback per prompt; ingest appends them (train grows, the newest 20% joins the holdout)."""
    from causal_router.serving.store import DecisionStore

    ff, X, prices = world
    s = make_stream(ff, X, rounds=2, batch=100, lam=LAM, seed=0)
    uri = f"sqlite:///{tmp_path / 'decisions.db'}"
    recs = explore_naive(s, 0.2, prices=prices, nuisances=loop_nuisances(0, cv=2), workdir=tmp_path,
                         store_uri=uri)
    assert [r["round"] for r in recs] == [0, 1] and set(recs[0]) == KEYS
    assert [r["n_logged"] for r in recs] == [100, 200]
    assert all(r["promoted"] is True for r in recs)  # no gate: always deployed
    store = DecisionStore(uri)
    decisions, feedback = store.frame("decisions"), store.frame("feedback")
    assert len(decisions) == 100 and len(feedback) == 100
    assert decisions["propensity"].between(0, 1, inclusive="right").all()
    assert (decisions["explore"] == 0.2).all()
    # exploration reached models other than the router's choice (propensity < 1 - explore for them)
    assert (decisions["propensity"] < 0.5).any()
    holdout = pd.read_parquet(tmp_path / "data" / "holdout.parquet")
    # round 0's 20 held-out rows stay, round 1's newest 20 decisions join them
    assert len(holdout) == 40 and holdout["prompt_id"].iloc[20:].isin(decisions["decision_id"]).all()
    assert not holdout["prompt_id"].iloc[:20].isin(decisions["decision_id"]).any()
    assert len(pd.read_parquet(tmp_path / "data" / "train.parquet")) == 60 + 80
    # realised utilities and regret are those of the table
    assert recs[1]["cumulative_regret"] > recs[0]["cumulative_regret"] > 0
    store.close()


def test_a_seeded_loop_is_reproducible(world, tmp_path):
    """Two runs of one arm on one stream give the same records, and the holdout takes the newest
    decisions of the round in the order they were made (random decision ids once made the order of
    one batch's rows, and so the retrained router, change from run to run)."""
    ff, X, prices = world
    s = make_stream(ff, X, rounds=3, batch=100, lam=LAM, seed=0)
    runs = [explore_naive(s, 0.2, prices=prices, nuisances=loop_nuisances(0, cv=2), workdir=tmp_path / k)
            for k in ("a", "b")]
    assert runs[0] == runs[1]
    served = [pd.read_parquet(tmp_path / k / "data" / "holdout.parquet")["prompt"].tolist() for k in ("a", "b")]
    assert served[0] == served[1]
    # round 2's newest 20 decisions are the last 20 prompts of round 2 in stream order
    assert served[0][-20:] == [str(p) for p in ff.prompts[s.round_prompts(2)][-20:]]
