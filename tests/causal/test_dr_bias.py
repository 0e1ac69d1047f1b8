"""DR is unbiased where naive estimates are biased under confounding (docs/architecture.md, Method steps 1-2, 6).

The synthetic logger prefers the model it believes best, so logged outcomes over-represent
easy prompts for every model. Naive estimates (mean logged score of a model, or a direct method
with a constant-per-model outcome model) inherit that bias; DR with the logger's known
propensities corrects it even though its outcome model is the same misspecified constant.
"""

import numpy as np
import pytest
from sklearn.dummy import DummyRegressor

from causal_router.causal.crossfit import CrossFitter
from causal_router.causal.ope import policy_value
from causal_router.causal.outcome import PerArmRegressor
from causal_router.data.synthetic import make_synthetic

SEEDS = (0, 1, 2, 3, 4)
N, K = 3000, 3


def _estimates(seed):
    s = make_synthetic(n=N, d=4, n_models=K, confounding=2.0, separation=4.0, seed=seed)
    t = s.treatment
    a = s.logs["score"].to_numpy(float)
    c = s.logs["cost"].to_numpy(float)
    tin = s.logs["input_tokens"].to_numpy(float)
    # misspecified outcome model: one constant per arm (the mean logged score of that arm)
    cf = CrossFitter(quality_model=PerArmRegressor(DummyRegressor()), cv=5,
                     propensity="logged", random_state=0)
    cf.fit(s.X, t, a, c, tin, logged_propensity=s.logs["propensity"].to_numpy(float))
    out = {}
    for name, pol in (("arm0", np.zeros(N, dtype=int)), ("optimal", s.optimal_policy(0.0))):
        truth = s.value(pol, 0.0)
        logged = t == pol
        dr = policy_value(pol, t, a, c, cf.nuisances_, 0.0, "dr")
        ipw = policy_value(pol, t, a, c, cf.nuisances_, 0.0, "ipw")
        dm = policy_value(pol, t, a, c, cf.nuisances_, 0.0, "dm")
        out[name] = dict(truth=truth, naive=a[logged].mean(), dm=dm.value, dr=dr.value, dr_se=dr.se,
                         ipw=ipw.value, ipw_se=ipw.se)
    return out


@pytest.fixture(scope="module")
def results():
    return [_estimates(seed) for seed in SEEDS]


def _pooled(results, policy, key):
    err = np.mean([r[policy][key] - r[policy]["truth"] for r in results])
    return err


def _pooled_se(results, policy, key):
    return float(np.sqrt(np.sum([r[policy][key + "_se"] ** 2 for r in results])) / len(results))


def test_setup_is_confounded(results):
    # the logger's bias is real: the logged mean of model 0 overstates its value on every seed
    for r in results:
        assert r["arm0"]["naive"] - r["arm0"]["truth"] > 0.08


@pytest.mark.parametrize("policy", ["arm0", "optimal"])
def test_dr_within_three_standard_errors_of_truth(results, policy):
    err, se = _pooled(results, policy, "dr"), _pooled_se(results, policy, "dr")
    assert abs(err) < 3 * se, (err, se)
    ierr, ise = _pooled(results, policy, "ipw"), _pooled_se(results, policy, "ipw")
    assert abs(ierr) < 3 * ise, (ierr, ise)


def test_naive_is_clearly_biased_for_always_model_0(results):
    se = _pooled_se(results, "arm0", "dr")
    dr_err = abs(_pooled(results, "arm0", "dr"))
    for key in ("naive", "dm"):
        err = _pooled(results, "arm0", key)
        assert err > 0.1, (key, err)  # over-estimates: the logged rows are the easy ones
        assert abs(err) > 6 * se and abs(err) > 4 * dr_err, (key, err, se, dr_err)


def test_constant_outcome_dm_is_clearly_biased_for_optimal_policy(results):
    se = _pooled_se(results, "optimal", "dr")
    err = _pooled(results, "optimal", "dm")
    assert abs(err) > 0.03 and abs(err) > 5 * se, (err, se)
    assert abs(err) > 3 * abs(_pooled(results, "optimal", "dr"))


def test_dr_beats_naive_on_every_seed_for_model_0(results):
    for r in results:
        x = r["arm0"]
        assert abs(x["dr"] - x["truth"]) < abs(x["naive"] - x["truth"])
        assert abs(x["dr"] - x["truth"]) < abs(x["dm"] - x["truth"])
