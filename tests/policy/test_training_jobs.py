"""Endpoint heads fitted elsewhere (forked processes, ``fit_routers(jobs=...)``; the train flow's tasks, one per
lambda) are the routers fitted in one process, arm posterior included."""

import pickle

import numpy as np
import pytest
import torch

from causal_router.data.synthetic import make_synthetic
from causal_router.policy.data import build_routing_data
from causal_router.policy.training import ENDPOINT_METHODS, fit_endpoint, fit_routers

LAMS = [0.0, 1000.0, 2000.0]
METHODS = ["rm-classification", "rm-softmax", "rm-interval"]


@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(), reason="needs fork")
def test_parallel_heads_equal_sequential(one_thread):
    s = make_synthetic(n=700, d=4, n_models=3, confounding=2.0, separation=8.0, seed=0)
    tr, va, te = s.subset(np.arange(400)), s.subset(np.arange(400, 600)), s.subset(np.arange(600, 700))
    data = build_routing_data(tr.logs, tr.X, va.logs, va.X, models=s.models, propensity="logged")
    seq, _ = fit_routers(data, LAMS, METHODS)
    par, seconds = fit_routers(data, LAMS, METHODS, jobs=2)
    assert set(seconds) == set(METHODS)
    for name in METHODS:
        a, b = seq[name], par[name]
        assert list(a.fallback_) == list(b.fallback_) and a.val_values_ == b.val_values_
        for na, nb in zip(a.nets_, b.nets_):
            assert all(torch.equal(x, y) for x, y in zip(na.state_dict().values(), nb.state_dict().values()))
        for lam in (0.0, 500.0, 2000.0):
            assert np.array_equal(a.predict_proba(te.X, lam), b.predict_proba(te.X, lam))
        # the heads point at this process's nuisance models and posterior, as when fitted here
        assert b.nuisance_["quality"] is data.crossfitter.quality_model_
        assert b.arm_posterior_ is data.arm_posterior


def test_the_flows_merged_routers_keep_the_arm_posterior(one_thread):
    """The flow fits each (method, lambda) in its own task on a copy of the routing data and merges the parts:
    the merged RM-Softmax and the RM-Interval built on it must still explore with Thompson's posterior."""
    s = make_synthetic(n=600, d=4, n_models=3, confounding=2.0, separation=8.0, seed=1)
    tr, va, te = s.subset(np.arange(350)), s.subset(np.arange(350, 500)), s.subset(np.arange(500, 600))
    data = build_routing_data(tr.logs, tr.X, va.logs, va.X, models=s.models, propensity="logged")
    seq, _ = fit_routers(data, LAMS, METHODS)
    parts = {m: [fit_endpoint(pickle.loads(pickle.dumps(data)), m, lam) for lam in LAMS] for m in ENDPOINT_METHODS}
    merged, _ = fit_routers(data, LAMS, METHODS, endpoints=parts)
    for name in METHODS:
        a, b = seq[name], merged[name]
        assert b.arm_posterior_ is data.arm_posterior and b.nuisance_["quality"] is data.crossfitter.quality_model_
        for lam in (0.0, 700.0):
            pa, pb = a.posterior(te.X, lam), b.posterior(te.X, lam)
            assert pb is not None
            assert np.allclose(pa[0], pb[0]) and np.allclose(pa[1], pb[1])
            assert np.array_equal(a.predict_proba(te.X, lam), b.predict_proba(te.X, lam))
