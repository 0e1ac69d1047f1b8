"""The simulated deployment loop: the stream, rounds through the service's code, the arms."""

import numpy as np
import pandas as pd
import pytest

from causal_router.loop.arms import ARMS, loop_nuisances, run_arm
from causal_router.loop.stream import LookupEncoder, make_stream, parse_incumbent
from tests.loop.world import HIDDEN, LAM, hidden_world

KEYS = {"seed", "arm", "explore", "round", "lam", "n_logged", "deployed_utility", "test_utility",
        "cumulative_regret", "promoted"}


@pytest.fixture(scope="module")
def world():
    return hidden_world(n=1000)


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
    recs = run_arm(s, "explore-naive", 0.2, prices=prices, nuisances=loop_nuisances(0, cv=2), workdir=tmp_path,
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
    runs = [run_arm(s, "explore-naive", 0.2, prices=prices, nuisances=loop_nuisances(0, cv=2), workdir=tmp_path / k)
            for k in ("a", "b")]
    assert runs[0] == runs[1]
    served = [pd.read_parquet(tmp_path / k / "data" / "holdout.parquet")["prompt"].tolist() for k in ("a", "b")]
    assert served[0] == served[1]
    # round 2's newest 20 decisions are the last 20 prompts of round 2 in stream order
    assert served[0][-20:] == [str(p) for p in ff.prompts[s.round_prompts(2)][-20:]]


def test_incumbent_and_unknown_arm(world):
    ff, X, _ = world
    s = make_stream(ff, X, rounds=3, batch=100, lam=LAM, seed=0)
    recs = run_arm(s, "incumbent")
    assert len(recs) == 3 and len({r["test_utility"] for r in recs}) == 1
    assert np.all(np.diff([r["cumulative_regret"] for r in recs]) > 0)
    with pytest.raises(ValueError, match="unknown arm"):
        run_arm(s, "bandit")
    assert set(ARMS) == {"causal", "greedy", "explore-naive", "vw", "incumbent", "skyline"}


def test_vw_peer_on_a_tiny_stream(world):
    from causal_router.loop.vw import VWRouter

    ff, X, _ = world
    s = make_stream(ff, X, rounds=3, batch=60, lam=LAM, seed=0)
    recs = run_arm(s, "vw", 0.2)
    assert [r["round"] for r in recs] == [0, 1, 2] and all(set(r) == KEYS for r in recs)
    assert all(np.isfinite(r["test_utility"]) and np.isfinite(r["deployed_utility"]) for r in recs)
    assert recs[0]["deployed_utility"] == run_arm(s, "incumbent")[0]["deployed_utility"]  # same round 0
    vw = VWRouter(4, 0.2, seed=0)
    p = vw.pmf(X[0])
    assert p.shape == (4,) and np.isclose(p.sum(), 1) and p.min() >= 0.2 / 4 - 1e-6  # epsilon-greedy
    vw.close()


@pytest.mark.slow
def test_exploring_loop_finds_the_hidden_model_and_greedy_does_not(world):
    """Statistical: over 3 seeds, the loop that explores (through the service's exploration policy)
    learns where the hidden model wins; the greedy loop never plays it again after round 0."""
    ff, X, prices = world
    gaps, found, greedy_found = [], 0, 0
    for seed in range(3):
        s = make_stream(ff, X, rounds=3, batch=200, lam=LAM, seed=seed)
        kw = dict(prices=prices, nuisances=loop_nuisances(seed, cv=2))
        greedy = run_arm(s, "greedy", 0.0, **kw)[-1]["test_utility"]
        explore = run_arm(s, "explore-naive", 0.2, **kw)[-1]["test_utility"]
        oracle = s.utility[s.test].max(1).mean()
        gaps.append(explore - greedy)
        found += explore > oracle - 0.05
        greedy_found += greedy > oracle - 0.05
    assert np.mean(gaps) > 0.03, gaps
    assert found >= 2 and greedy_found <= 1, (found, greedy_found)


def test_uniform_reference_averages_independent_draws(world):
    from causal_router.loop.arms import uniform_reference

    ff, X, _ = world
    s = make_stream(ff, X, rounds=3, batch=100, lam=LAM, seed=0)
    one = uniform_reference(s, 300)
    two = uniform_reference(s, 300, draws=2)
    assert len(one) == 1 and len(two) == 2 and two[0] == one[0]  # the first draw does not depend on draws
    incumbent = float((s.incumbent[s.test] * s.utility[s.test]).sum(1).mean())
    assert min(two) > incumbent  # uniform logs show the hidden model that the incumbent all but ignores
    with pytest.raises(ValueError, match="draws must be at least 1"):
        uniform_reference(s, 300, draws=0)


def test_skyline_is_the_causal_learner_given_full_feedback(world):
    """The skyline starts from the direct method fitted on every model's outcome, so on its
    validation prompts it is never below that direct method (early stopping keeps the start);
    its records come once per round, without a gate."""
    from causal_router.loop.arms import FullFeedbackOutcomes, full_feedback_router

    ff, X, prices = world
    s = make_stream(ff, X, rounds=3, batch=100, lam=LAM, seed=0)
    idx = s.seen(2)
    router = full_feedback_router(s, idx, prices=prices)
    tr, va = idx[:240], idx[240:]
    dm = FullFeedbackOutcomes(ff, X, tr, prices)
    tok = ff.input_tokens[va]
    dm_choice = (dm.quality_model_.predict(X[va]) - LAM * dm.cost_model_.predict(X[va], tok)).argmax(1)
    U = s.utility[va]
    rows = np.arange(len(va))
    assert U[rows, router.predict(X[va], LAM, tok)].mean() >= U[rows, dm_choice].mean() - 1e-12
    assert router.starts_[0] is not None  # a start was chosen, not a bare network
    recs = run_arm(s, "skyline", prices=prices)
    assert [r["round"] for r in recs] == [0, 1, 2] and all(r["promoted"] is None for r in recs)
    assert recs[-1]["test_utility"] > float((s.incumbent[s.test] * s.utility[s.test]).sum(1).mean())
