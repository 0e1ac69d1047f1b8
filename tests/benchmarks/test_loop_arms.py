"""The loop study's arms (:mod:`benchmarks.loop_arms`, :mod:`benchmarks.vw`) on a stream."""

import numpy as np
import pytest

from benchmarks.loop_arms import ARMS, run_arm
from causal_router.loop.rounds import loop_nuisances
from causal_router.loop.stream import make_stream
from tests.loop.world import LAM, hidden_world

KEYS = {"seed", "arm", "explore", "round", "lam", "n_logged", "deployed_utility", "test_utility",
        "cumulative_regret", "promoted"}


@pytest.fixture(scope="module")
def world():
    return hidden_world(n=1000)


def test_incumbent_and_unknown_arm(world):
    ff, X, _ = world
    s = make_stream(ff, X, rounds=3, batch=100, lam=LAM, seed=0)
    recs = run_arm(s, "incumbent")
    assert len(recs) == 3 and len({r["test_utility"] for r in recs}) == 1
    assert np.all(np.diff([r["cumulative_regret"] for r in recs]) > 0)
    with pytest.raises(ValueError, match="unknown arm"):
        run_arm(s, "bandit")
    assert set(ARMS) == {"causal", "greedy", "explore-naive", "vw", "incumbent", "skyline", "litellm-adaptive"}


def test_vw_peer_on_a_tiny_stream(world):
    from benchmarks.vw import VWRouter

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
    from benchmarks.loop_arms import uniform_reference

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
    from benchmarks.loop_arms import FullFeedbackOutcomes, full_feedback_router

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


def test_litellm_adaptive_arm_runs_litellms_bandit_at_its_best_cost_weight(world):
    """LiteLLM's own bandit functions, offline: every cost weight is run and the best final test
    utility kept; under new-model it never routes to the absent model before round 3."""
    from benchmarks.litellm_adaptive import WEIGHTS, run_litellm, tiers
    from causal_router.loop.scenarios import make_scenario

    ff, X, prices = world
    s = make_stream(ff, X, rounds=4, batch=60, lam=LAM, seed=0)
    assert tiers(prices, s.models)[s.models[-1]] == 3 and min(tiers(prices, s.models).values()) == 1
    recs = run_arm(s, "litellm-adaptive", prices=prices)
    finals = [run_litellm(s, prices, w)[-1]["test_utility"] for w in WEIGHTS]
    assert recs[-1]["test_utility"] == max(finals) and recs[-1]["cost_weight"] in WEIGHTS
    assert [r["round"] for r in recs] == [0, 1, 2, 3] and np.all(np.diff([r["cumulative_regret"] for r in recs]) > 0)
    new = run_litellm(s, prices, 0.1, make_scenario("new-model", s))
    assert [r["changed_model_share"] for r in new[:3]] == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="price sheet"):
        run_arm(s, "litellm-adaptive")


def test_skyline_and_vw_serve_only_the_pool_under_new_model(world):
    from causal_router.loop.scenarios import make_scenario

    ff, X, prices = world
    s = make_stream(ff, X, rounds=4, batch=60, lam=LAM, seed=0)
    for arm in ("skyline", "vw"):
        recs = run_arm(s, arm, 0.2, prices=prices, scenario=lambda: make_scenario("new-model", s))
        assert [r["changed_model_share"] for r in recs[:3]] == [0.0, 0.0, 0.0], arm
