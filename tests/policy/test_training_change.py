"""The retrain under a changing pool (policy/training.py): a model with only a few logged rows (new to
the pool) is an arm like the others, and rows of a model no longer listed (removed from the pool)
stay valid training rows instead of stopping the retrain."""

import numpy as np

from causal_router.causal.nuisances import NuisanceConfig
from causal_router.data.simulate import log_frame
from causal_router.policy.training import fit_routing_data, served_models, train_routerset
from tests.loop.world import HIDDEN, hidden_world


def _logs(n_new: int, seed: int = 0):
    """Uniform logs over the three visible models, plus ``n_new`` rows of the hidden (new) model."""
    ff, X, prices = hidden_world(600, seed)
    rng = np.random.default_rng(seed)
    chosen = rng.integers(0, 3, size=ff.n_prompts)
    chosen[rng.choice(ff.n_prompts, n_new, replace=False)] = 3
    probs = np.full((ff.n_prompts, 4), 0.25)
    return log_frame(ff, np.arange(ff.n_prompts), chosen, probs), X, prices


def test_a_model_with_few_rows_is_retrained_and_its_rows_counted():
    logs, X, prices = _logs(4)
    data, meta = fit_routing_data(logs.iloc[:450], X[:450], logs.iloc[450:], X[450:], prices=prices,
                                  nuisances=NuisanceConfig(cv=3, propensity="logged"))
    assert meta["models"][-1] == HIDDEN and meta["rows_per_model"][HIDDEN] == 4
    assert sum(meta["rows_per_model"].values()) == 600
    rs = train_routerset(data, [200.0], ["naive"], meta=meta)
    assert rs.models == meta["models"] and rs.meta["rows_per_model"][HIDDEN] == 4


def test_rows_of_a_model_left_out_of_the_list_stay_training_rows():
    """The hidden model removed from the configured list: its logged rows are not refused, it stays
    an arm (after the listed ones), and the served pool gives it probability 0."""
    logs, X, prices = _logs(60)
    listed = sorted(set(prices) - {HIDDEN})
    assert served_models(listed, prices, logs) == [*listed, HIDDEN]
    data, meta = fit_routing_data(logs.iloc[:450], X[:450], logs.iloc[450:], X[450:], models=listed,
                                  prices=prices, nuisances=NuisanceConfig(cv=3, propensity="logged"))
    assert meta["models"] == [*listed, HIDDEN] and meta["rows_per_model"][HIDDEN] > 0
