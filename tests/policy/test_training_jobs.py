"""Endpoint heads fitted in forked processes (``fit_routers(jobs=...)``) are the routers fitted in one."""

import numpy as np
import pytest
import torch

from causal_router.data.synthetic import make_synthetic
from causal_router.policy.data import build_routing_data
from causal_router.policy.training import fit_routers

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
