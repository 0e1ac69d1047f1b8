"""Cross-fitting (docs/architecture.md, Method step 1): no row is ever predicted by a model that saw it."""

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsRegressor

from causal_router.causal.crossfit import CrossFitter, Nuisances, ScoredRows
from causal_router.causal.outcome import PerArmRegressor, TokenCostModel
from causal_router.causal.propensity import PropensityModel
from causal_router.data.synthetic import make_synthetic

N, K, CV = 600, 3, 5

# Spies record, per call, the row ids (column 0 of X) they were fitted on / asked to predict.
# sklearn's clone deep-copies parameters, so the records live at module level.
FIT_CALLS: list = []
PREDICT_CALLS: list = []


class SpyRegressor(RegressorMixin, BaseEstimator):
    def __init__(self, tag="reg"):
        self.tag = tag

    def fit(self, X, y):
        self.ids_ = frozenset(X[:, 0].astype(int).tolist())
        FIT_CALLS.append((self.tag, self.ids_))
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X):
        ids = frozenset(X[:, 0].astype(int).tolist())
        PREDICT_CALLS.append((self.tag, self.ids_, ids))
        return np.full(len(X), self.mean_)


class SpyClassifier(ClassifierMixin, BaseEstimator):
    def __init__(self, tag="clf"):
        self.tag = tag

    def fit(self, X, y):
        self.ids_ = frozenset(X[:, 0].astype(int).tolist())
        FIT_CALLS.append((self.tag, self.ids_))
        self.classes_ = np.unique(y)
        self.prior_ = np.array([np.mean(y == k) for k in self.classes_])
        return self

    def predict_proba(self, X):
        ids = frozenset(X[:, 0].astype(int).tolist())
        PREDICT_CALLS.append((self.tag, self.ids_, ids))
        return np.tile(self.prior_, (len(X), 1))


@pytest.fixture(scope="module")
def logs():
    s = make_synthetic(n=N, d=3, n_models=K, confounding=1.0, separation=2.0, seed=7)
    X = np.column_stack([np.arange(N, dtype=float), s.X])  # column 0: row id
    return s, X


@pytest.fixture(scope="module")
def spied(logs):
    s, X = logs
    FIT_CALLS.clear()
    PREDICT_CALLS.clear()
    cf = CrossFitter(
        propensity_model=PropensityModel(SpyClassifier("e")),
        quality_model=PerArmRegressor(SpyRegressor("q")),
        cost_model=TokenCostModel(),
        cv=CV,
        random_state=0,
    )
    cf.fit(X, s.treatment, s.logs["score"].to_numpy(float), s.logs["cost"].to_numpy(float),
           s.logs["input_tokens"].to_numpy(float))
    return cf, list(FIT_CALLS), list(PREDICT_CALLS)


def test_fold_indices_partition_the_rows(spied):
    cf, _, _ = spied
    assert len(cf.fold_indices_) == CV
    tests = [set(te.tolist()) for _, te in cf.fold_indices_]
    for i in range(CV):
        for j in range(i + 1, CV):
            assert not tests[i] & tests[j]
    assert set().union(*tests) == set(range(N))
    for tr, te in cf.fold_indices_:
        assert not set(tr.tolist()) & set(te.tolist())
        assert len(tr) + len(te) == N
    folds = cf.nuisances_.folds
    assert folds.min() == 0 and folds.max() == CV - 1
    for f, (_, te) in enumerate(cf.fold_indices_):
        assert np.all(folds[te] == f)


def test_no_prediction_by_a_model_that_saw_the_row(spied):
    _, fits, predicts = spied
    # cross-fitting: CV folds x (1 propensity + K outcome) fits, then the refit on all rows
    assert sum(tag == "e" for tag, _ in fits) == CV + 1
    assert sum(tag == "q" for tag, _ in fits) == K * (CV + 1)
    assert len(predicts) == CV * (1 + K)  # predictions only happen out of fold during fit
    for tag, fitted_on, predicted in predicts:
        assert not fitted_on & predicted, f"{tag} model predicted rows it was fitted on"
    # every row is predicted exactly once per nuisance
    for tag, per_fold in (("e", 1), ("q", K)):
        covered = [i for t, _, p in predicts if t == tag for i in p]
        assert len(covered) == per_fold * N and set(covered) == set(range(N))


def test_refit_models_saw_all_rows(spied):
    cf, fits, _ = spied
    last_e = [ids for tag, ids in fits if tag == "e"][-1]
    assert last_e == frozenset(range(N))
    assert cf.propensity_model_.estimator_.ids_ == frozenset(range(N))


def test_nuisances_shapes(spied):
    cf, _, _ = spied
    nu = cf.nuisances_
    assert isinstance(nu, Nuisances)
    for arr in (nu.propensity, nu.quality, nu.cost):
        assert arr.shape == (N, K)
    assert nu.logged_propensity.shape == (N,)
    np.testing.assert_allclose(nu.propensity.sum(1), 1.0)


def test_one_nearest_neighbour_memoriser_is_not_reproduced_out_of_fold(logs):
    """A 1-NN regressor reproduces its training targets exactly; out of fold it cannot."""
    s, X = logs
    rng = np.random.default_rng(0)
    y = rng.random(N)  # continuous: equal by chance with probability 0
    t = s.treatment
    cf = CrossFitter(quality_model=PerArmRegressor(KNeighborsRegressor(n_neighbors=1)),
                     cv=CV, random_state=0)
    feats = X[:, 1:]
    cf.fit(feats, t, y, s.logs["cost"].to_numpy(float), s.logs["input_tokens"].to_numpy(float))
    rows = np.arange(N)
    oof = cf.nuisances_.quality[rows, t]
    insample = cf.quality_model_.predict(feats)[rows, t]
    np.testing.assert_allclose(insample, y)  # the refit model memorised the logs
    assert np.mean(np.isclose(oof, y)) < 0.01  # cross-fitted predictions did not


def test_groups_never_straddle_folds(logs):
    s, X = logs
    groups = np.arange(N) // 3  # three rows per prompt
    cf = CrossFitter(cv=CV).fit(X[:, 1:], s.treatment, s.logs["score"].to_numpy(float),
                                         s.logs["cost"].to_numpy(float), s.logs["input_tokens"].to_numpy(float),
                                         groups=groups)
    folds = cf.nuisances_.folds
    for g in np.unique(groups):
        assert len(set(folds[groups == g].tolist())) == 1
    assert set(folds.tolist()) == set(range(CV))


@pytest.fixture(scope="module")
def fitted(logs):
    s, X = logs
    lp = s.logs["propensity"].to_numpy(float)
    args = (X[:, 1:], s.treatment, s.logs["score"].to_numpy(float), s.logs["cost"].to_numpy(float),
            s.logs["input_tokens"].to_numpy(float))
    logged = CrossFitter(propensity="logged", random_state=0).fit(*args, logged_propensity=lp)
    fitted = CrossFitter(propensity="fitted", random_state=0).fit(*args, logged_propensity=lp)
    return s, X, lp, logged, fitted


class TestLoggedPropensity:

    def test_logged_uses_the_given_propensities(self, fitted):
        s, _, lp, logged, _ = fitted
        np.testing.assert_array_equal(logged.nuisances_.logged_propensity, lp)
        np.testing.assert_allclose(lp, s.propensity[np.arange(N), s.treatment])

    def test_fitted_uses_the_fitted_model(self, fitted):
        s, _, lp, _, fitted_cf = fitted
        nu = fitted_cf.nuisances_
        np.testing.assert_allclose(nu.logged_propensity, nu.propensity[np.arange(N), s.treatment])
        assert not np.allclose(nu.logged_propensity, lp)

    def test_other_nuisances_do_not_depend_on_the_choice(self, fitted):
        _, _, _, logged, fitted_cf = fitted
        np.testing.assert_allclose(logged.nuisances_.quality, fitted_cf.nuisances_.quality)
        np.testing.assert_allclose(logged.nuisances_.propensity, fitted_cf.nuisances_.propensity)

    def test_predict_new_rows(self, fitted):
        s, X, lp, logged, fitted_cf = fitted
        nv = logged.predict(X[:50, 1:], s.treatment[:50], s.logs["input_tokens"].to_numpy(float)[:50], lp[:50])
        np.testing.assert_array_equal(nv.logged_propensity, lp[:50])
        assert nv.quality.shape == (50, K) and nv.folds is None
        nf = fitted_cf.predict(X[:50, 1:], s.treatment[:50], s.logs["input_tokens"].to_numpy(float)[:50])
        np.testing.assert_allclose(nf.logged_propensity, nf.propensity[np.arange(50), s.treatment[:50]])

    def test_logged_without_propensities_raises(self, logs):
        s, X = logs
        with pytest.raises(ValueError, match="logged"):
            CrossFitter(propensity="logged").fit(X, s.treatment, s.logs["score"].to_numpy(float),
                                                           s.logs["cost"].to_numpy(float))

    def test_unknown_propensity_mode_raises(self, logs):
        s, X = logs
        with pytest.raises(ValueError, match="propensity"):
            CrossFitter(propensity="oracle").fit(X, s.treatment, s.logs["score"].to_numpy(float),
                                                           s.logs["cost"].to_numpy(float))


def test_default_propensity_model_is_logistic():
    pm = PropensityModel().fit(np.random.default_rng(0).normal(size=(90, 2)), np.repeat([0, 2], 45), n_arms=3)
    assert isinstance(pm.estimator_, LogisticRegression)
    p = pm.predict_proba(np.zeros((4, 2)))
    assert p.shape == (4, 3) and np.all(p[:, 1] == 0) and np.allclose(p.sum(1), 1)


def test_predict_logged_without_propensities_raises(fitted):
    s, X, _, logged, _ = fitted
    with pytest.raises(ValueError, match="propensity"):
        logged.predict(X[:20, 1:], s.treatment[:20], s.logs["input_tokens"].to_numpy(float)[:20])


def _thin_arm_logs(seed: int):
    """Logs in which arm 2 has 30 rows, all from one corner of the feature space (x_0 > 1), plus an
    evaluation set: every arm's outcome on 60 prompts outside the logs."""
    s = make_synthetic(n=1200, d=3, n_models=K, confounding=1.0, separation=2.0, seed=seed)
    thin = np.flatnonzero((s.treatment == 2) & (s.X[:, 0] > 1.0))[:30]
    rows = np.sort(np.concatenate([np.flatnonzero(s.treatment != 2), thin]))
    eval_rows = np.setdiff1d(np.arange(len(s.X)), rows)[:60]
    rng = np.random.default_rng(seed)
    ev = ScoredRows(X=np.repeat(s.X[eval_rows], K, axis=0), treatment=np.tile(np.arange(K), len(eval_rows)),
                    quality=rng.binomial(1, s.mean_quality[eval_rows].ravel()).astype(float),
                    cost=s.cost[eval_rows].ravel(),
                    input_tokens=np.repeat(s.logs["input_tokens"].to_numpy(float)[eval_rows], K))
    return s, rows, ev


def _fit(s, rows, scored=None, quality_model=None):
    cf = CrossFitter(quality_model=quality_model, cv=3, random_state=0)
    return cf.fit(s.X[rows], s.treatment[rows], s.logs["score"].to_numpy(float)[rows],
                  s.logs["cost"].to_numpy(float)[rows], s.logs["input_tokens"].to_numpy(float)[rows],
                  n_arms=K, scored=scored)


def test_scored_rows_anchor_a_thinly_logged_arm_and_leave_the_propensities_alone():
    errors = []
    for seed in range(4):
        s, rows, ev = _thin_arm_logs(seed)
        plain, anchored = _fit(s, rows), _fit(s, rows, ev)
        test = np.setdiff1d(np.arange(len(s.X)), rows)
        err = [np.mean(np.abs(cf.quality_model_.predict(s.X[test])[:, 2] - s.mean_quality[test, 2]))
               for cf in (plain, anchored)]
        errors.append(err)
        # the propensity model never sees the evaluation set: fold for fold the same
        np.testing.assert_array_equal(plain.nuisances_.propensity, anchored.nuisances_.propensity)
        assert not np.allclose(plain.nuisances_.quality[:, 2], anchored.nuisances_.quality[:, 2])
    errors = np.array(errors)
    assert np.all(errors[:, 1] < errors[:, 0]), errors


def test_scored_rows_reach_every_fold_and_the_final_fit():
    s, rows, ev = _thin_arm_logs(0)
    FIT_CALLS.clear()
    X = np.column_stack([np.arange(len(s.X), dtype=float), s.X])
    ev_ids = np.arange(10_000, 10_000 + len(ev), dtype=float)
    ev = ScoredRows(np.column_stack([ev_ids, ev.X]), ev.treatment, ev.quality, ev.cost, ev.input_tokens)
    cf = CrossFitter(propensity_model=PropensityModel(SpyClassifier("e")),
                     quality_model=PerArmRegressor(SpyRegressor("q")), cv=CV, random_state=0)
    cf.fit(X[rows], s.treatment[rows], s.logs["score"].to_numpy(float)[rows], s.logs["cost"].to_numpy(float)[rows],
           s.logs["input_tokens"].to_numpy(float)[rows], n_arms=K, scored=ev)
    eval_ids = set(ev_ids.astype(int).tolist())
    q_fits = [ids for tag, ids in FIT_CALLS if tag == "q"]
    e_fits = [ids for tag, ids in FIT_CALLS if tag == "e"]
    assert len(q_fits) == K * (CV + 1) and len(e_fits) == CV + 1
    # every fold's (and the final) per-arm quality model holds that arm's evaluation rows
    for ids in q_fits:
        assert len(ids & eval_ids) == len(ev) // K
    assert all(not (ids & eval_ids) for ids in e_fits)


def test_scored_rows_need_the_token_columns_the_logs_carry():
    s, rows, ev = _thin_arm_logs(0)
    bare = ScoredRows(ev.X, ev.treatment, ev.quality, ev.cost)
    with pytest.raises(ValueError, match="input_tokens"):
        _fit(s, rows, bare)
    with pytest.raises(ValueError, match=r"shape \(m, 3\)"):
        _fit(s, rows, ScoredRows(ev.X[:, :2], ev.treatment, ev.quality, ev.cost, ev.input_tokens))
    with pytest.raises(ValueError, match=r"treatment must lie in \[0, 3\)"):
        _fit(s, rows, ScoredRows(ev.X, ev.treatment + 1, ev.quality, ev.cost, ev.input_tokens))
