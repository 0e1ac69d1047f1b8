"""Pessimistic selection on synthetic logs with a known best policy."""

import numpy as np
import pytest

from causal_router.causal.crossfit import Nuisances
from causal_router.causal.ope import policy_value
from causal_router.causal.selection import LoggedEvidence, improvement, select_policy

# arm 0: well logged, true mean 0.5; arm 1: well logged, true mean 0.7 but the outcome model says 0.5;
# arm 2: logged ~5 times in 1000, true mean 0.3, the outcome model (a pooled model) says 0.9
P_LOG = np.array([0.595, 0.4, 0.005])
TRUE = np.array([0.5, 0.7, 0.3])
MU = np.array([0.55, 0.5, 0.9])


def logs(seed, m=1000, true=TRUE):
    rng = np.random.default_rng(seed)
    t = rng.choice(3, size=m, p=P_LOG)
    y = (rng.random(m) < true[t]).astype(float)
    nu = Nuisances(np.tile(P_LOG, (m, 1)), P_LOG[t], np.tile(MU, (m, 1)), np.zeros((m, 3)))
    return LoggedEvidence(t, y, np.zeros(m), nu)


def always(arm, m=1000):
    return np.full(m, arm)


def test_rare_arm_overrated_by_the_outcome_model_is_not_selected():
    picked, picked_1se, plain = 0, 0, 0
    for seed in range(40):
        ev = logs(seed)
        name, bounds = select_policy({"safe": always(0), "rare": always(2)}, "safe", ev, 0.0)
        picked += name == "rare"
        picked_1se += select_policy({"safe": always(0), "rare": always(2)}, "safe", ev, 0.0, pessimism=1.0)[0] == "rare"
        # the plain clipped DR difference with its row-wise standard error is confidently wrong
        a = policy_value(always(2), ev.treatment, ev.quality, ev.cost, ev.nuisances, 0.0, clip=0.1)
        b = policy_value(always(0), ev.treatment, ev.quality, ev.cost, ev.nuisances, 0.0, clip=0.1)
        plain += (a.value - b.value) - 2 * np.hypot(a.se, b.se) > 0
    # one standard error is a one-sided ~84% bound: a few of 40 draws may switch (4 seen); two (the default) <= 2
    assert picked <= 2 and picked_1se <= 6
    assert plain >= 30


def test_well_evidenced_better_arm_is_selected_although_the_outcome_model_underrates_it():
    for seed in range(5):
        name, bounds = select_policy({"dm": always(0), "b": always(1), "rare": always(2)}, "dm", logs(seed), 0.0)
        assert name == "b"
        est, se = bounds["b"]
        assert abs(est - 0.2) < 3 * se + 0.02  # true improvement 0.7 - 0.5


def test_rare_arm_that_really_is_better_needs_evidence():
    # arm 2 truly 0.95: with ~5 rows it stays uncertain, with 50x the rows it is chosen
    true = np.array([0.5, 0.7, 0.95])
    few = logs(0, m=1000, true=true)
    many = logs(0, m=40000, true=true)
    assert improvement(always(2), always(0), few, 0.0).se > 0.1
    name, _ = select_policy({"safe": always(0, 40000), "rare": always(2, 40000)}, "safe", many, 0.0)
    assert name == "rare"


def test_identical_policies_have_zero_improvement_and_the_default_is_kept():
    ev = logs(1)
    est = improvement(always(1), always(1), ev, 0.0)
    assert est.value == 0.0 and est.se == 0.0
    name, _ = select_policy({"dm": always(1), "same": always(1)}, "dm", ev, 0.0)
    assert name == "dm"


def test_absolute_lower_bound_prefers_the_supported_policy():
    ev = logs(2)
    name, bounds = select_policy({"a0": always(0), "a1": always(1), "a2": always(2)}, None, ev, 0.0)
    assert name == "a1"
    assert bounds["a2"][1] > 5 * bounds["a1"][1]  # the rare arm's value is far less certain


def test_unbiased_on_average_with_enough_rows():
    # with every arm well logged the estimate recovers the true improvement despite a biased outcome model
    global P_LOG
    saved = P_LOG
    try:
        P_LOG = np.array([0.4, 0.3, 0.3])
        vals = [improvement(always(2), always(0), logs(s), 0.0) for s in range(20)]
    finally:
        P_LOG = saved
    mean = np.mean([v.value for v in vals])
    assert abs(mean - (0.3 - 0.5)) < 0.03


def test_bad_inputs_raise_clear_errors():
    ev = logs(0)
    with pytest.raises(ValueError, match="policies must give"):
        improvement(always(0, 10), always(0), ev, 0.0)
    with pytest.raises(ValueError, match="prior_rows"):
        improvement(always(0), always(0), ev, 0.0, prior_rows=0)
    with pytest.raises(KeyError, match="default"):
        select_policy({"a": always(0)}, "b", ev, 0.0)
    with pytest.raises(ValueError, match="quality"):
        LoggedEvidence(ev.treatment, ev.quality[:-1], ev.cost, ev.nuisances)


def test_a_wrong_direct_method_is_left_for_the_loggers_safe_arm_when_its_own_arm_is_logged_enough():
    # the outcome model overrates arm 2 (0.9 against a true 0.3), so the direct method routes everything
    # there; the logger sends 10% of prompts to arm 2 and 80% to arm 0 (true 0.6): the logs show both
    # arms well enough that the improvement over the direct method has a positive lower bound
    p_log, true, mu = np.array([0.8, 0.1, 0.1]), np.array([0.6, 0.4, 0.3]), np.array([0.55, 0.4, 0.9])
    left = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        t = rng.choice(3, size=1000, p=p_log)
        y = (rng.random(1000) < true[t]).astype(float)
        ev = LoggedEvidence(t, y, np.zeros(1000), Nuisances(np.tile(p_log, (1000, 1)), p_log[t],
                                                            np.tile(mu, (1000, 1)), np.zeros((1000, 3))))
        name, bounds = select_policy({"dm": always(2), "logging": always(0)}, "dm", ev, 0.0)
        left += name == "logging"
        est, se = bounds["logging"]
        assert abs(est - 0.3) < 3 * se + 0.02  # the true improvement 0.6 - 0.3
    assert left == 20


def test_default_pessimism_is_two_standard_errors():
    # one was tried in issue 32 and lost issue 13's guarantee (benchmarks/results/loggers/pessimism_check.md)
    from causal_router.causal.selection import DEFAULT_PESSIMISM

    assert DEFAULT_PESSIMISM == 2.0
