"""Routers and baselines (docs/architecture.md, Method step 3 and 5) on synthetic logs with a known optimum."""

import numpy as np
import pytest

from causal_router.data.synthetic import make_synthetic
from causal_router.policy.catalog import ROUTERS, get_router
from causal_router.policy.data import build_routing_data
from causal_router.policy.regret import RMClassificationRouter, RMIntervalRouter, RMSoftmaxRouter, _select
from causal_router.policy.routers import (
    BestSingleRouter,
    CheapestRouter,
    DRRegressRouter,
    NaiveRouter,
    RandomRouter,
)
from causal_router.policy.training import DEFAULT_METHODS, fit_routers

N_TRAIN, N_VAL, N_TEST, K = 2000, 1000, 1000, 3
LAMS = [0.0, 1000.0, 2000.0]
NET = dict(epochs=30, hidden=64, batch_size=128)


def _split(s):
    a, b = N_TRAIN, N_TRAIN + N_VAL
    return s.subset(np.arange(a)), s.subset(np.arange(a, b)), s.subset(np.arange(b, b + N_TEST))


def _regret(router, te, lam):
    chosen = router.predict(te.X, lam, te.logs["input_tokens"].to_numpy(float))
    return te.value(te.optimal_policy(lam), lam) - te.value(chosen, lam)


@pytest.fixture(scope="module")
def separable(one_thread):
    s = make_synthetic(n=N_TRAIN + N_VAL + N_TEST, d=4, n_models=K, confounding=2.0, separation=8.0, seed=0)
    tr, va, te = _split(s)
    data = build_routing_data(tr.logs, tr.X, va.logs, va.X, models=s.models, propensity="logged")
    params = {"rm-softmax": NET, "rm-classification": NET, "random": {"random_state": 0}}
    routers, seconds = fit_routers(data, LAMS, params=params)
    return data, te, routers, seconds


def test_fit_routers_trains_every_default_method(separable):
    _, _, routers, seconds = separable
    assert list(routers) == list(DEFAULT_METHODS) == list(seconds)
    for name, r in routers.items():
        assert isinstance(r, ROUTERS[name]) and r.name == name
        assert seconds[name] >= 0


@pytest.mark.parametrize("name", ["rm-softmax", "rm-classification", "rm-interval", "naive", "dr-regress"])
def test_learned_routers_reach_near_zero_regret(separable, name):
    _, te, routers, _ = separable
    assert _regret(routers[name], te, 0.0) < 0.02


@pytest.mark.parametrize("name", ["rm-softmax", "rm-classification"])
def test_rm_routers_beat_single_model_baselines(separable, name):
    _, te, routers, _ = separable
    for lam in LAMS:
        r = _regret(routers[name], te, lam)
        assert r < 0.06
        for base in ("best-single", "random", "cheapest"):
            assert _regret(routers[base], te, lam) > r + 0.03, (lam, base)
    assert _regret(routers["best-single"], te, 0.0) > 0.15 and _regret(routers["random"], te, 0.0) > 0.15


def test_separable_problem_heads_are_chosen_among_the_candidates(separable):
    _, _, routers, _ = separable
    for name in ("rm-softmax", "rm-classification"):
        r = routers[name]
        assert len(r.nets_) == len(LAMS) and len(r.val_values_) == len(LAMS) == len(r.selection_)
        np.testing.assert_array_equal(r.lambdas_, LAMS)
        for f, bounds in zip(r.fallback_, r.selection_):
            assert f is None or f in ("dm", "logging", "dr-regress") or f in range(K)
            assert {"network", "dm", "logging", "dr-regress"} <= set(bounds)
            assert bounds["dm"] == (0.0, 0.0)  # the default, against which the others are bounded


def test_earlier_rule_keeps_learned_policies_on_a_separable_problem(separable):
    data, te, _, _ = separable
    r = RMSoftmaxRouter(select="best-single", **NET).fit(data, LAMS)
    assert r.fallback_ == [None] * len(LAMS)
    assert r.selection_ == [{}] * len(LAMS)


def test_head_leaves_a_misspecified_direct_method_when_evidence_supports_it():
    # the outcome model is a ridge in x, the truth a step function of x: the direct method is
    # biased, the DR-trained network is not, and 3000 logged rows with overlap support the switch
    s = make_synthetic(n=N_TRAIN + N_VAL + N_TEST, d=4, n_models=K, confounding=1.0, separation=8.0, seed=1)
    tr, va, te = _split(s)
    data = build_routing_data(tr.logs, tr.X, va.logs, va.X, models=s.models, propensity="logged")
    r = RMSoftmaxRouter(**NET).fit(data, [0.0])
    naive = NaiveRouter().fit(data, [0.0])
    # whatever is chosen is no worse than the direct method beyond noise
    assert _regret(r, te, 0.0) <= _regret(naive, te, 0.0) + 0.01


def test_unknown_selection_rule_raises(no_signal):
    data, _ = no_signal
    with pytest.raises(ValueError, match="select must be one of"):
        RMSoftmaxRouter(select="best", **NET).fit(data, [0.0])


def test_learned_routers_spend_less_at_higher_lambda(separable):
    _, te, routers, _ = separable
    rows = np.arange(N_TEST)
    for name in ("rm-softmax", "rm-classification", "rm-interval", "dr-regress", "naive"):
        spend = [te.cost[rows, routers[name].predict(te.X, lam, te.logs["input_tokens"].to_numpy(float))].mean()
                 for lam in LAMS]
        assert spend[0] > spend[1] > spend[2] or spend[0] > spend[2] * 1.2, (name, spend)


def test_predict_proba_is_one_hot_of_predict(separable):
    _, te, routers, _ = separable
    tin = te.logs["input_tokens"].to_numpy(float)
    for name in ("cheapest", "best-single", "naive", "dr-regress", "rm-softmax", "rm-interval"):
        p = routers[name].predict_proba(te.X, 1000.0, tin)
        assert p.shape == (N_TEST, K)
        np.testing.assert_array_equal(p.sum(1), 1.0)
        np.testing.assert_array_equal(p.argmax(1), routers[name].predict(te.X, 1000.0, tin))


def test_endpoint_router_uses_nearest_grid_lambda(separable):
    _, te, routers, _ = separable
    r = routers["rm-softmax"]
    np.testing.assert_array_equal(r.scores(te.X, 400.0), r.scores(te.X, 0.0))
    np.testing.assert_array_equal(r.scores(te.X, 1400.0), r.scores(te.X, 1000.0))
    np.testing.assert_array_equal(r.scores(te.X, 1e6), r.scores(te.X, 2000.0))
    assert not np.array_equal(r.scores(te.X, 0.0), r.scores(te.X, 2000.0))


def test_random_router_is_uniform(separable):
    data, te, routers, _ = separable
    r = routers["random"]
    np.testing.assert_array_equal(r.predict_proba(te.X, 0.0), np.full((N_TEST, K), 1 / K))
    picks = r.predict(te.X, 0.0)
    assert set(picks.tolist()) == set(range(K))
    counts = np.bincount(picks, minlength=K) / N_TEST
    assert np.all(np.abs(counts - 1 / K) < 0.06)
    np.testing.assert_array_equal(picks, RandomRouter(random_state=0).fit(data, LAMS).predict(te.X, 0.0))


def test_cheapest_picks_the_cheapest_model(separable):
    data, te, routers, _ = separable
    r = routers["cheapest"]
    cheapest = int(te.cost.mean(0).argmin())
    assert cheapest == 0  # prices rise with the model index
    for lam in (0.0, 500.0, 2000.0):
        np.testing.assert_array_equal(r.predict(te.X, lam), cheapest)
    np.testing.assert_allclose(r.mean_cost_, data.utilities.cost.mean(0))


def _boosted(seed=1, boost=0.1):
    """Synthetic logs where model 2 (the most expensive) is best on average at lambda 0."""
    s = make_synthetic(n=N_TRAIN + N_VAL + N_TEST, d=4, n_models=K, confounding=2.0, separation=8.0, seed=seed)
    s.mean_quality = np.clip(s.mean_quality + np.array([0.0, 0.0, boost]), 0.0, 1.0)
    rows = np.arange(len(s.treatment))
    s.logs["score"] = np.random.default_rng(seed).binomial(1, s.mean_quality[rows, s.treatment]).astype(float)
    return s


def test_best_single_picks_best_true_mean_utility():
    s = _boosted()
    tr, va, te = _split(s)
    data = build_routing_data(tr.logs, tr.X, va.logs, va.X, models=s.models, propensity="logged")
    best = BestSingleRouter().fit(data, LAMS)
    cheapest = CheapestRouter().fit(data, LAMS)
    checked = 0
    for lam in (0.0, 50.0, 1000.0, 2000.0):
        true_means = s.utility(lam).mean(0)
        top2 = np.sort(true_means)[-2:]
        if top2[1] - top2[0] < 0.04:
            continue
        checked += 1
        np.testing.assert_array_equal(best.predict(te.X, lam), int(true_means.argmax()))
    assert checked >= 3
    assert best.predict(te.X[:1], 0.0)[0] == 2 and cheapest.predict(te.X[:1], 0.0)[0] == 0


def test_select_margin_rule():
    rng = np.random.default_rng(0)
    G = rng.normal(size=(500, 3))
    G[:, 1] += 1.0
    assert _select(G, np.full(500, 1), fallback=0, margin=1.0)       # clearly better
    assert not _select(G, np.full(500, 0), fallback=0, margin=1.0)   # identical: no gain
    assert not _select(G, np.full(500, 0), fallback=1, margin=1.0)   # worse
    assert not _select(G, np.full(500, 1), fallback=0, margin=100.0)  # gain below a huge margin


@pytest.fixture(scope="module")
def no_signal(one_thread):
    # separation 0: every model has quality 0.5 everywhere, so the DR utilities carry no signal in x
    s = make_synthetic(n=N_TRAIN + N_VAL + N_TEST, d=4, n_models=K, confounding=2.0, separation=0.0, seed=3)
    tr, va, te = _split(s)
    data = build_routing_data(tr.logs, tr.X, va.logs, va.X, models=s.models, propensity="logged")
    return data, te


@pytest.mark.parametrize("cls", [RMSoftmaxRouter, RMClassificationRouter])
def test_no_signal_falls_back_to_best_single(no_signal, cls):
    data, te = no_signal
    r = cls(margin=1.0, select="best-single", **NET).fit(data, [0.0, 1000.0])
    best = BestSingleRouter().fit(data, LAMS)
    for k, lam in enumerate(r.lambdas_):
        arm = int(best._arm_scores(lam).argmax())
        assert r.fallback_[k] == arm
        np.testing.assert_array_equal(r.predict(te.X, lam), arm)
        np.testing.assert_array_equal(r.predict(te.X, lam), best.predict(te.X, lam))
    assert r.fallback_[1] == 0  # with equal quality, the cheapest model is best once cost counts


def test_no_signal_huge_negative_margin_keeps_network(no_signal):
    data, _ = no_signal
    r = RMSoftmaxRouter(margin=-1e9, select="best-single", **NET).fit(data, [0.0])
    assert r.fallback_ == [None]


@pytest.mark.parametrize("cls", [RMSoftmaxRouter, RMClassificationRouter])
def test_no_signal_departs_from_the_direct_method_only_on_a_positive_bound(no_signal, cls):
    data, te = no_signal
    r = cls(**NET).fit(data, [0.0, 1000.0])
    naive = NaiveRouter().fit(data, LAMS)
    for k, lam in enumerate(r.lambdas_):
        f = r.fallback_[k]
        if f == "dm":
            np.testing.assert_array_equal(r.predict(te.X, lam), naive.predict(te.X, lam))
        else:
            est, se = r.selection_[k]["network" if f is None else str(f)]
            assert est - r.pessimism * se > 0
        assert _regret(r, te, lam) <= _regret(naive, te, lam) + 0.01


def test_huge_negative_pessimism_leaves_the_default(no_signal):
    data, _ = no_signal
    r = RMSoftmaxRouter(pessimism=-1e9, **NET).fit(data, [0.0])
    assert r.fallback_ != ["dm"]


def test_without_validation_logs_no_fallback(no_signal):
    data, te = no_signal
    from dataclasses import replace

    r = RMSoftmaxRouter(**{**NET, "epochs": 3}).fit(replace(data, X_val=None, val_utilities=None), [0.0])
    assert r.fallback_ == [None]
    assert r.predict(te.X, 0.0).shape == (N_TEST,)


def test_registry_holds_every_default_method():
    for name in DEFAULT_METHODS:
        assert name in ROUTERS
        assert isinstance(get_router(name), ROUTERS[name])
    assert ROUTERS["rm-softmax"] is RMSoftmaxRouter and ROUTERS["rm-interval"] is RMIntervalRouter
    assert ROUTERS["naive"] is NaiveRouter and ROUTERS["dr-regress"] is DRRegressRouter
    assert get_router("rm-softmax", tau=0.3).tau == 0.3


def test_unknown_router_raises_naming_registered():
    with pytest.raises(KeyError) as err:
        get_router("nope")
    msg = str(err.value)
    assert "nope" in msg
    for name in ROUTERS:
        assert name in msg


def test_fit_routers_rejects_unknown_method(no_signal):
    data, _ = no_signal
    with pytest.raises(KeyError, match="nope"):
        fit_routers(data, LAMS, methods=["random", "nope"])


def test_seeded_fits_in_concurrent_threads_equal_serial_fits(separable):
    """The flow fits endpoint heads as concurrent thread tasks; torch's generator is process-wide, so
    without the fit lock their seeded draws interleave and the networks differ from serial fits."""
    from concurrent.futures import ThreadPoolExecutor

    data = separable[0]
    lams = [0.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0]

    def weights(lam):
        r = RMSoftmaxRouter(epochs=20, hidden=32, batch_size=64).fit(data, [lam])
        return [p.detach().numpy().copy() for net in r.nets_ for p in net.parameters()]

    serial = [weights(lam) for lam in lams]
    with ThreadPoolExecutor(len(lams)) as pool:
        threaded = list(pool.map(weights, lams))
    for a, b in zip(serial, threaded, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", ["naive", "rm-softmax", "rm-interval"])
def test_routers_with_an_outcome_model_give_a_posterior(separable, name):
    """Thompson exploration reads it: the direct method's utilities, and a spread per model that
    shrinks with its logged training rows."""
    data, te, routers, _ = separable
    X, tok = te.X[:50], te.logs["input_tokens"].to_numpy(float)[:50]
    mean, sd = routers[name].posterior(X, LAMS[1], tok)
    naive = routers["naive"].scores(X, LAMS[1], tok)
    np.testing.assert_allclose(mean, naive)
    counts = np.bincount(data.treatment, minlength=K)
    assert sd.shape == (K,) and (sd > 0).all()
    assert sd[counts.argmin()] >= sd[counts.argmax()]
    assert routers["best-single"].posterior(X, LAMS[1], tok) is None


def test_linear_predict_is_ridge_predict_bit_for_bit():
    """The served ridge product skips sklearn's per-call validation and nothing else: identical predictions
    (float32 and float64 features, one or several targets), and the same refusal of a wrong width."""
    from sklearn.linear_model import Ridge

    from causal_router.policy.routers import linear_predict

    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        X = rng.normal(size=(50, 8)).astype(dtype)
        for y in (rng.normal(size=(50, 3)), rng.normal(size=50)):
            m = Ridge(alpha=10.0).fit(X, y)
            Z = rng.normal(size=(7, 8)).astype(dtype)
            assert np.array_equal(linear_predict(m, Z), m.predict(Z))
    with pytest.raises(ValueError, match="fitted on"):
        linear_predict(m, rng.normal(size=(2, 5)))
