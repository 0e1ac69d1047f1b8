"""The loggers study's replay of the selection rule and its summary (:mod:`benchmarks.loggers_study`)."""

import numpy as np
import pandas as pd

from benchmarks.loggers_study import replayed, simulate_logs, summary
from causal_router.data.matrices import FullFeedback


def _cands(est, se, util):
    names = ["network", "dm", "logging", "dr-regress", "best-arm", "logging-prob"]
    return pd.DataFrame({"dataset": "t", "logger": "l", "eval_set": 0, "lam": 0.0, "candidate": names,
                         "est_dm": est, "se_dm": se, "test_utility": util})


def test_replay_keeps_dm_without_a_positive_bound_and_else_takes_the_largest():
    util = [0.1, 0.2, 0.3, 0.4, 0.5, 0.9]
    kept = replayed(_cands([0.01, 0, 0.02, 0.0, 0.01, 5.0], [0.02, 0, 0.03, 0.0, 0.02, 0.0], util), 1.0)
    assert kept.candidate.tolist() == ["dm"]            # logging-prob is never served
    left = replayed(_cands([0.05, 0, 0.02, 0.10, 0.2, 0], [0.01, 0, 0.01, 0.02, 0.15, 0], util), 1.0)
    assert left.candidate.tolist() == ["dr-regress"] and left.test_utility.tolist() == [0.4]
    assert replayed(_cands([0.05, 0, 0.02, 0.10, 0.2, 0], [0.01, 0, 0.01, 0.02, 0.15, 0], util), 2.0
                    ).candidate.tolist() == ["dr-regress"]
    # identical policies (the network kept at its dm start) tie at zero: the network, as _choose orders them
    assert replayed(_cands([0, 0, -1, -1, -1, 0], [0, 0, 1, 1, 1, 0], util), 1.0).candidate.tolist() == ["network"]


def test_summary_shares_and_goal():
    df = pd.DataFrame({"dataset": "t", "eval_set": 0, "split": "report", "default_utility": [0.5, 0.5, 0.49],
                       "best_simple_utility": [0.5, 0.49, 0.5], "uniform_level": 0.6})
    s = summary(df).iloc[0]
    assert s.cells == 3 and np.isclose(s.share_ok, 2 / 3) and np.isclose(s.worst, -0.01)
    assert not s.goal


def test_simulated_logs_follow_the_given_probabilities():
    n, K = 600, 3
    rng = np.random.default_rng(0)
    ff = FullFeedback(prompt_ids=np.array([f"p{i}" for i in range(n)]), prompts=np.array(["q"] * n),
                      models=np.array(["a", "b", "c"]), scores=rng.random((n, K)), costs=np.ones((n, K)) * 1e-3)
    probs = np.tile([0.8, 0.15, 0.05], (n, 1))
    train, val, test, tr, va, te = simulate_logs(ff, probs, seed=1)
    assert len(tr) + len(va) + len(te) == n and not set(tr) & set(te)
    share = train.model.value_counts(normalize=True)
    assert abs(share["a"] - 0.8) < 0.06
    assert set(np.round(train.propensity, 6)) <= {0.8, 0.15, 0.05}
    assert test.propensities.shape == (len(te), K)
