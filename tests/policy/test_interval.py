"""Interval router (docs/architecture.md, Method step 4): interpolated endpoint heads answer any lambda."""

import numpy as np
import pytest

from causal_router.data.synthetic import make_synthetic
from causal_router.policy.data import build_routing_data
from causal_router.policy.regret import RMIntervalRouter, RMSoftmaxRouter
from causal_router.policy.training import fit_routers

N_TRAIN, N_VAL, N_TEST, K = 2000, 1000, 1000, 3
LAMS = [0.0, 1000.0, 2000.0]
# network heads throughout (the earlier fallback rule keeps them on this separable problem): these tests
# are about interpolation and fine-tuning; the pessimistic head choice is tested in test_routers.py
NET = dict(epochs=25, hidden=64, batch_size=128, select="best-single")


@pytest.fixture(scope="module")
def fitted(one_thread):
    s = make_synthetic(n=N_TRAIN + N_VAL + N_TEST, d=4, n_models=K, confounding=2.0, separation=8.0, seed=0)
    a, b = N_TRAIN, N_TRAIN + N_VAL
    tr, va, te = s.subset(np.arange(a)), s.subset(np.arange(a, b)), s.subset(np.arange(b, b + N_TEST))
    data = build_routing_data(tr.logs, tr.X, va.logs, va.X, models=s.models, propensity="logged")
    softmax = RMSoftmaxRouter(**NET).fit(data, LAMS)
    own = RMIntervalRouter(finetune_epochs=0, **NET).fit(data, LAMS)  # trains its own heads
    shared = RMIntervalRouter(finetune_epochs=0, **NET).fit(data, LAMS, endpoints=softmax)
    tuned = RMIntervalRouter(finetune_epochs=5, **NET).fit(data, LAMS, endpoints=softmax)
    return data, te, softmax, own, shared, tuned


def _regret(router, te, lam):
    return te.value(te.optimal_policy(lam), lam) - te.value(router.predict(te.X, lam), lam)


def test_endpoints_are_learned(fitted):
    _, _, softmax, *_ = fitted
    assert softmax.fallback_ == [None] * len(LAMS)


@pytest.mark.parametrize("which", ["own", "shared"])
def test_without_finetuning_grid_scores_equal_rm_softmax(fitted, which):
    _, te, softmax, own, shared, _ = fitted
    r = own if which == "own" else shared
    for lam in LAMS:
        np.testing.assert_allclose(r.scores(te.X, lam), softmax.scores(te.X, lam), rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(r.predict(te.X, lam), softmax.predict(te.X, lam))


def test_endpoints_are_copied_not_shared(fitted):
    _, _, softmax, _, shared, tuned = fitted
    for mine, theirs in zip(tuned.nets_, softmax.nets_):
        assert mine is not theirs
    assert shared.nets_[0] is not softmax.nets_[0]


def test_scores_interpolate_linearly_between_heads(fitted):
    _, te, _, _, shared, tuned = fitted
    for r in (shared, tuned):
        s0, s1, s2 = (r.scores(te.X, lam) for lam in LAMS)
        np.testing.assert_allclose(r.scores(te.X, 500.0), 0.5 * s0 + 0.5 * s1, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(r.scores(te.X, 1250.0), 0.75 * s1 + 0.25 * s2, rtol=1e-5, atol=1e-5)
        # outside the grid: clamped to the end heads
        np.testing.assert_array_equal(r.scores(te.X, -100.0), s0)
        np.testing.assert_array_equal(r.scores(te.X, 5000.0), s2)


@pytest.mark.parametrize("which", ["shared", "tuned"])
def test_decisions_piecewise_constant_in_lambda(fitted, which):
    _, te, _, _, shared, tuned = fitted
    r = shared if which == "shared" else tuned
    X = te.X[:300]
    changed_somewhere = 0
    for lo, hi in zip(LAMS[:-1], LAMS[1:]):
        grid = np.linspace(lo, hi, 101)
        picks = np.stack([r.predict(X, lam) for lam in grid])  # (101, n)
        changes = (picks[1:] != picks[:-1]).sum(0)
        assert changes.max() <= K - 1
        # and no model is chosen again after being left (affine scores: one segment per model)
        for i in range(X.shape[0]):
            seq = picks[:, i]
            runs = seq[np.r_[True, seq[1:] != seq[:-1]]]
            assert len(runs) == len(set(runs.tolist()))
        changed_somewhere += int((changes > 0).sum())
    assert changed_somewhere > 0  # decisions do react to lambda


def test_answers_off_grid_lambdas(fitted):
    _, te, softmax, _, shared, tuned = fitted
    for r in (shared, tuned):
        for lam in (137.0, 500.0, 1234.5, 1999.0):
            p = r.predict(te.X, lam)
            assert p.shape == (N_TEST,) and p.min() >= 0 and p.max() < K
            # off-grid regret no worse than the nearest-grid endpoint router's, up to a small slack
            assert _regret(r, te, lam) < _regret(softmax, te, lam) + 0.02


def test_finetuning_stays_close_to_endpoint_quality(fitted):
    _, te, softmax, _, _, tuned = fitted
    for lam in LAMS:
        assert _regret(tuned, te, lam) < _regret(softmax, te, lam) + 0.02
    assert _regret(tuned, te, 0.0) < 0.03


def test_finetuning_without_validation_keeps_last_state(fitted):
    from dataclasses import replace

    data, te, softmax, *_ = fitted
    r = RMIntervalRouter(finetune_epochs=2, **NET).fit(replace(data, X_val=None, val_utilities=None), LAMS,
                                                      endpoints=softmax)
    for lam in LAMS:
        assert not np.allclose(r.scores(te.X, lam), softmax.scores(te.X, lam))
        assert _regret(r, te, lam) < _regret(softmax, te, lam) + 0.03


def test_fit_routers_reuses_rm_softmax_endpoints(fitted):
    data, te, *_ = fitted
    routers, _ = fit_routers(data, LAMS, methods=["rm-softmax", "rm-interval"],
                             params={"rm-softmax": dict(NET, epochs=5)})
    sm, iv = routers["rm-softmax"], routers["rm-interval"]
    assert iv.epochs == 5 and iv.hidden == NET["hidden"]
    assert iv.fallback_ == sm.fallback_
    assert iv.predict(te.X, 700.0).shape == (N_TEST,)


def test_mismatched_endpoint_grid_trains_own_heads(fitted):
    data, te, softmax, *_ = fitted
    r = RMIntervalRouter(finetune_epochs=0, **dict(NET, epochs=2)).fit(data, [0.0, 2000.0], endpoints=softmax)
    np.testing.assert_array_equal(r.lambdas_, [0.0, 2000.0])
    assert len(r.nets_) == 2
