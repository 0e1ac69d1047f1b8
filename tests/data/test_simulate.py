"""Tests of log simulation from full feedback (docs/architecture.md, Data contracts). Offline, synthetic data."""

import numpy as np
import pandas as pd
import pytest

from causal_router.data.logging_policies import POLICIES, logging_probabilities
from causal_router.data.matrices import FullFeedback
from causal_router.data.schema import propensity_matrix
from causal_router.data.simulate import Simulation, simulate, split_prompts

N, K, D = 600, 4, 8


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(123)
    X = rng.standard_normal((N, D))
    datasets = np.where(rng.random(N) < 0.7, "math", "code")
    price = np.array([1.0, 3.0, 10.0, 30.0]) * 1e-6  # model m0 cheapest
    in_tok = rng.integers(20, 400, N).astype(float)
    out_tok = rng.integers(10, 300, (N, K)).astype(float)
    coef = rng.standard_normal((D, K)) * 0.1
    scores = np.clip(0.5 + X @ coef + np.array([0.0, 0.05, 0.1, 0.15]), 0, 1)
    costs = (in_tok[:, None] + out_tok) * price
    ff = FullFeedback(
        prompt_ids=np.array([f"p{i}" for i in range(N)]),
        prompts=np.array([f"prompt {i}" for i in range(N)]),
        models=np.array([f"m{t}" for t in range(K)]),
        scores=scores,
        costs=costs,
        datasets=datasets,
        input_tokens=in_tok,
        output_tokens=out_tok,
    )
    return ff, X


@pytest.fixture(scope="module")
def sims(data):
    ff, X = data
    return {p: simulate(ff, X, p, seed=7) for p in POLICIES}


def test_split_sizes_stratified_disjoint(data):
    ff, _ = data
    tr, va, te = split_prompts(ff, seed=1)
    assert abs(len(tr) - 360) <= 2 and abs(len(va) - 120) <= 2 and abs(len(te) - 120) <= 2
    allidx = np.concatenate([tr, va, te])
    assert len(np.unique(allidx)) == N and set(allidx) == set(range(N))
    share = np.mean(ff.datasets == "math")
    for idx in (tr, va, te):
        assert abs(np.sum(ff.datasets[idx] == "math") - share * len(idx)) <= 3


@pytest.mark.parametrize("policy", POLICIES)
def test_simulation_frames(data, sims, policy):
    ff, _ = data
    sim = sims[policy]
    assert isinstance(sim, Simulation)
    tr, va, te = sim.train, sim.val, sim.test
    for log in (tr, va):
        assert log["prompt_id"].is_unique
        assert set(log.columns) >= {"prompt_id", "prompt", "model", "score", "cost", "propensity",
                                    "dataset", "input_tokens", "output_tokens"}
        for c in ("score", "cost", "propensity"):
            assert log[c].dtype == float
        assert pd.api.types.is_string_dtype(log["model"]) and pd.api.types.is_string_dtype(log["prompt_id"])
    # test: K rows per prompt, propensities sum to 1
    assert (te.groupby("prompt_id").size() == K).all()
    np.testing.assert_allclose(te.groupby("prompt_id")["propensity"].sum(), 1.0)
    ids = [set(tr.prompt_id), set(va.prompt_id), set(te.prompt_id)]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    n_drop = sim.info["n_dropped_slice"]
    assert len(ids[0] | ids[1] | ids[2]) == N - n_drop
    assert abs(len(tr) + n_drop - 360) <= 2 and abs(len(va) - 120) <= 2 and abs(len(te) / K - 120) <= 2
    assert sim.info["n_train"] == len(tr) and sim.info["n_test"] == len(te) // K
    assert sim.info["policy"] == policy and sim.info["models"] == list(ff.models)
    if policy == "previous-router":
        assert n_drop == round(0.1 * (len(tr) + n_drop))
    else:
        assert n_drop == 0


@pytest.mark.parametrize("policy", POLICIES)
def test_logged_propensity_and_values_match(data, sims, policy):
    ff, X = data
    sim = sims[policy]
    probs, _ = logging_probabilities(ff, X, policy, seed=7, kappa=sim.info["strength"], lam_log=sim.info["lam_log"],
                                     fit_idx=_slice(ff, sim) if policy == "previous-router" else None)
    pos = {p: i for i, p in enumerate(ff.prompt_ids)}
    mpos = {m: t for t, m in enumerate(ff.models)}
    for log in (sim.train, sim.val):
        i = log.prompt_id.map(pos).to_numpy()
        t = log.model.map(mpos).to_numpy()
        np.testing.assert_allclose(log.propensity, probs[i, t])
        np.testing.assert_allclose(log.score, ff.scores[i, t])
        np.testing.assert_allclose(log.cost, ff.costs[i, t])
        np.testing.assert_allclose(log.output_tokens, ff.output_tokens[i, t])
    i = sim.test.prompt_id.map(pos).to_numpy()
    t = sim.test.model.map(mpos).to_numpy()
    np.testing.assert_allclose(sim.test.propensity, probs[i, t])


def _slice(ff, sim):
    """Prompts in neither split: the previous router's (dropped) slice."""
    used = set(sim.train.prompt_id) | set(sim.val.prompt_id) | set(sim.test.prompt_id)
    return np.array([i for i, p in enumerate(ff.prompt_ids) if p not in used])


@pytest.mark.parametrize("policy", POLICIES)
def test_probabilities_valid(data, policy):
    ff, X = data
    probs, _ = logging_probabilities(ff, X, policy, seed=3)
    assert probs.shape == (N, K)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert (probs >= 0.05 / K - 1e-12).all()


def test_uniform_and_beta_zero(data):
    ff, X = data
    p, info = logging_probabilities(ff, None, "uniform")
    np.testing.assert_allclose(p, 1.0 / K)
    p0, info0 = logging_probabilities(ff, X, "cost-biased", beta=0.0)
    np.testing.assert_allclose(p0, 1.0 / K)
    assert info0["strength"] == 0.0


def test_cost_biased_favours_cheap(data, sims):
    ff, X = data
    p, _ = logging_probabilities(ff, X, "cost-biased", beta=3.0, seed=7)
    cheapest = int(np.argmin(ff.costs.mean(axis=0)))
    assert p[:, cheapest].mean() > 1.0 / K
    assert p[:, cheapest].mean() > p[:, int(np.argmax(ff.costs.mean(axis=0)))].mean()
    assert sims["cost-biased"].info["strength"] == 3.0


def test_previous_router_calibration_and_slice(data, sims):
    ff, X = data
    sim = sims["previous-router"]
    assert abs(sim.info["mean_max_propensity"] - 0.75) <= 0.01
    assert sim.info["strength"] > 0
    dropped = set(ff.prompt_ids[_slice(ff, sim)])
    assert len(dropped) == sim.info["n_dropped_slice"] > 0
    assert not dropped & set(sim.train.prompt_id)
    # an explicit kappa is used as is
    p_small, info = logging_probabilities(ff, X, "previous-router", kappa=0.0, seed=7)
    np.testing.assert_allclose(p_small, 1.0 / K)
    assert info["strength"] == 0.0


def test_empirical_frequencies_match(data):
    ff, X = data
    sim = simulate(ff, X, "cost-biased", beta=3.0, seed=11)
    log = pd.concat([sim.train, sim.val])
    probs, _ = logging_probabilities(ff, X, "cost-biased", beta=3.0, seed=11)
    pos = {p: i for i, p in enumerate(ff.prompt_ids)}
    expected = probs[log.prompt_id.map(pos).to_numpy()].mean(axis=0)
    freq = log.model.value_counts(normalize=True).reindex(ff.models, fill_value=0).to_numpy()
    n = len(log)
    assert np.all(np.abs(freq - expected) <= 4 * np.sqrt(expected * (1 - expected) / n) + 0.01)


@pytest.mark.parametrize("policy", POLICIES)
def test_determinism(data, policy):
    ff, X = data
    a, b = simulate(ff, X, policy, seed=5), simulate(ff, X, policy, seed=5)
    for x, y in ((a.train, b.train), (a.val, b.val), (a.test, b.test)):
        pd.testing.assert_frame_equal(x, y)
    assert a.info == b.info
    c = simulate(ff, X, policy, seed=6)
    assert set(c.train.prompt_id) != set(a.train.prompt_id)


def test_errors(data):
    ff, X = data
    with pytest.raises(ValueError, match="uniform, cost-biased, previous-router"):
        simulate(ff, X, "greedy")
    with pytest.raises(ValueError, match="rows"):
        simulate(ff, X[:10], "cost-biased")
    with pytest.raises(ValueError, match="beta"):
        simulate(ff, X, "cost-biased", beta=-1.0)
    for policy in ("cost-biased", "previous-router"):
        with pytest.raises(ValueError, match=policy):
            simulate(ff, None, policy)


def test_no_optional_columns():
    rng = np.random.default_rng(0)
    n = 100
    ff = FullFeedback(
        prompt_ids=np.array([f"q{i}" for i in range(n)]), prompts=np.array(["x"] * n),
        models=np.array(["a", "b", "c"]), scores=rng.random((n, 3)), costs=rng.random((n, 3)) + 0.1,
    )
    X = rng.standard_normal((n, 4))
    for policy in POLICIES:
        sim = simulate(ff, X, policy, seed=0)
        assert list(sim.train.columns) == ["prompt_id", "prompt", "model", "score", "cost", "propensity",
                                           "propensities"]
        assert len(sim.test) == 3 * sim.info["n_test"]
        # the whole logging distribution of each row, whose entry for the drawn model is its propensity
        P = propensity_matrix(sim.train, ["a", "b", "c"])
        np.testing.assert_allclose(P.sum(1), 1.0)
        drawn = sim.train["model"].map({"a": 0, "b": 1, "c": 2}).to_numpy()
        np.testing.assert_array_equal(P[np.arange(len(P)), drawn], sim.train["propensity"])
