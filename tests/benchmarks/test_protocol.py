"""The study's protocol (:mod:`benchmarks.protocol`): the simulated logs come from the world's
features, the routers learn from theirs."""

import numpy as np
import pytest

from benchmarks.protocol import run_protocol
from causal_router.data.matrices import FullFeedback

N, K, D = 400, 3, 6


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((N, D))
    scores = np.clip(0.5 + X @ (rng.standard_normal((D, K)) * 0.1) + np.array([0.0, 0.1, 0.2]), 0, 1)
    costs = np.tile(np.array([1.0, 3.0, 10.0]) * 1e-3, (N, 1))
    ff = FullFeedback(prompt_ids=np.array([f"p{i}" for i in range(N)]), prompts=np.array([f"q {i}" for i in range(N)]),
                      models=np.array([f"m{t}" for t in range(K)]), scores=scores, costs=costs)
    return ff, X


def _logging_utility(recs):
    return {r["lambda"]: r["utility"] for r in recs if r["method"] == "logging-policy"}


@pytest.mark.parametrize("policy", ["cost-biased", "previous-router"])
def test_the_logs_follow_the_world_features_not_the_routers(table, policy):
    """Perturbing the routers' features (as bf16 embeddings do) leaves the logs alone when the world's
    features are given; without them the logging policy reads the perturbed features and its logs change."""
    ff, X = table
    X_noisy = X + np.random.default_rng(0).normal(0, 0.3, X.shape)
    kw = dict(strength=3.0 if policy == "cost-biased" else None, seed=0, lambdas=[0.0, 10.0],
              methods=["naive"], skyline=False)
    ref = _logging_utility(run_protocol(ff, X, policy, **kw))
    pinned = _logging_utility(run_protocol(ff, X_noisy, policy, X_world=X, **kw))
    moved = _logging_utility(run_protocol(ff, X_noisy, policy, **kw))
    assert pinned == ref
    assert moved != ref
