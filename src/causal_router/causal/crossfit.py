"""Cross-fitted nuisances: out-of-fold propensity, quality and cost predictions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

from .checks import check_fit_inputs, check_predict_X
from .outcome import PooledRidge, TokenCostModel
from .propensity import PropensityModel


@dataclass
class Nuisances:
    """Nuisance predictions for a set of logged rows.

    Attributes
    ----------
    propensity : ndarray (n, n_arms)
        ``e_t(x_i)`` (fitted), for every arm.
    logged_propensity : ndarray (n,)
        ``e_{t_i}(x_i)``: the propensity DR uses (fitted or taken from the logs).
    quality : ndarray (n, n_arms)
        ``mu^a_t(x_i)``.
    cost : ndarray (n, n_arms)
        ``mu^c_t(x_i)``.
    folds : ndarray (n,) or None
        Fold of each row when cross-fitted (the row was predicted by models not fitted on it).
    """

    propensity: np.ndarray
    logged_propensity: np.ndarray
    quality: np.ndarray
    cost: np.ndarray
    folds: np.ndarray | None = None


@dataclass
class ScoredRows:
    """Outcomes observed outside the logs, e.g. an evaluation set on which every model was run.

    They join every fit of the quality and cost models (each cross-fitting fold's and the final one),
    never the propensity model's: no logging policy chose them, so they say nothing about it, and they
    carry no DR correction. Unconfounded by construction, they anchor the outcome models on models
    that the logs hold few rows of.

    Attributes
    ----------
    X : ndarray (m, d)
    treatment : ndarray (m,) int
    quality, cost : ndarray (m,)
    input_tokens, output_tokens : ndarray (m,) or None
        Needed exactly when the logs carry them (the cost model reads the same columns from both).
    """

    X: np.ndarray
    treatment: np.ndarray
    quality: np.ndarray
    cost: np.ndarray
    input_tokens: np.ndarray | None = None
    output_tokens: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.treatment)


def _rows(v, idx):
    return None if v is None else np.asarray(v)[idx]


def _with_scored(scored: ScoredRows | None, X, t, a, c, tin, tout):
    """The outcome models' training rows: the logged rows followed by ``scored``'s (a token column the
    logs lack is left out for both: the logs decide what the outcome models read)."""
    if scored is None or len(scored) == 0:
        return X, t, a, c, tin, tout

    def cat(log_v, scored_v):
        return None if log_v is None else np.concatenate([np.asarray(log_v, dtype=float), scored_v])

    return (np.vstack([X, scored.X]), np.concatenate([t, scored.treatment]), cat(a, scored.quality),
            cat(c, scored.cost), cat(tin, scored.input_tokens), cat(tout, scored.output_tokens))


def _check_scored(scored: ScoredRows, d: int, K: int, input_tokens, output_tokens) -> None:
    X = np.asarray(scored.X)
    if X.ndim != 2 or X.shape[1] != d:
        raise ValueError(f"the scored rows' features must have shape (m, {d}) like the logs', got {X.shape}")
    for name, v in (("treatment", scored.treatment), ("quality", scored.quality), ("cost", scored.cost)):
        if len(v) != len(X):
            raise ValueError(f"the scored rows' {name} has {len(v)} entries for {len(X)} feature rows")
    t = np.asarray(scored.treatment)
    if len(t) and (t.min() < 0 or t.max() >= K):
        raise ValueError(f"the scored rows' treatment must lie in [0, {K}), got [{t.min()}, {t.max()}]")
    for name, log_v, scored_v in (("input_tokens", input_tokens, scored.input_tokens),
                                  ("output_tokens", output_tokens, scored.output_tokens)):
        if log_v is not None and (scored_v is None or len(scored_v) != len(X)):
            raise ValueError(f"the logs carry {name}, so the scored rows need it on every row")


def fit_fold(crossfitter, X, t, quality, cost, input_tokens, output_tokens, train_idx, test_idx, n_arms=None,
             scored=None):
    """One fold: fit the nuisance models on ``train_idx`` (the outcome models also on ``scored``, a
    :class:`ScoredRows` or None) and predict ``test_idx``.

    Returns (propensity, quality, cost) predictions, each (len(test_idx), K). A module-level
    function so that a task runner can ship it to another process.
    """
    tr, te = train_idx, test_idx
    K = n_arms if n_arms is not None else crossfitter.n_arms_
    e, q, cm = crossfitter._fit_models(X[tr], t[tr], quality[tr], cost[tr], _rows(input_tokens, tr),
                                       _rows(output_tokens, tr), K, scored)
    return e.predict_proba(X[te]), q.predict(X[te], _rows(input_tokens, te)), cm.predict(X[te], _rows(input_tokens, te))


class CrossFitter(BaseEstimator):
    """Fits propensity and per-model outcome models out-of-fold (EconML-style injection).

    Parameters
    ----------
    propensity_model : PropensityModel-like or None
        Must expose ``fit(X, t)`` and ``predict_proba(X) -> (n, K)``.
    quality_model, cost_model : multi-arm outcome models or None
        ``fit(X, t, y, input_tokens, output_tokens)`` and ``predict(X, input_tokens) -> (n, K)``.
        Defaults: :class:`PooledRidge` for quality, :class:`TokenCostModel` for cost.
    cv : int
        Number of folds F (default 5).
    propensity : {"fitted", "logged"}
        Use the fitted propensities or the logging policy's own (``logged_propensity`` in ``fit``).
    random_state : int or None
    """

    def __init__(
        self,
        propensity_model=None,
        quality_model=None,
        cost_model=None,
        cv: int = 5,
        propensity: str = "fitted",
        random_state=None,
    ):
        self.propensity_model = propensity_model
        self.quality_model = quality_model
        self.cost_model = cost_model
        self.cv = cv
        self.propensity = propensity
        self.random_state = random_state

    def _models(self):
        e = self.propensity_model if self.propensity_model is not None else PropensityModel()
        q = self.quality_model if self.quality_model is not None else PooledRidge()
        c = self.cost_model if self.cost_model is not None else TokenCostModel()
        return clone(e), clone(q), clone(c)

    def _fit_models(self, X, t, a, c, tin, tout, n_arms, scored=None):
        e, q, cm = self._models()
        e.fit(X, t, n_arms=n_arms)
        X, t, a, c, tin, tout = _with_scored(scored, X, t, a, c, tin, tout)
        return e, q.fit(X, t, a, tin, tout, n_arms=n_arms), cm.fit(X, t, c, tin, tout, n_arms=n_arms)

    def fit(self, X, treatment, quality, cost, input_tokens=None, output_tokens=None,
            logged_propensity=None, groups=None, fold_map=None, n_arms: int | None = None,
            scored: ScoredRows | None = None):
        """Cross-fit on logs and refit on all rows (for predicting new prompts).

        Parameters
        ----------
        X : ndarray (n, d)
        treatment : ndarray (n,) int
        quality, cost : ndarray (n,)
        input_tokens : ndarray (n,) or None
        output_tokens : ndarray (n,) or None
        logged_propensity : ndarray (n,) or None
            Required when ``propensity="logged"``.
        groups : ndarray (n,) or None
            Rows of one group (prompt) never straddle folds.
        fold_map : callable or None
            ``fold_map(fit_fold, jobs) -> list`` runs the folds (e.g. as tasks on a cluster);
            None runs them here, one after the other.
        n_arms : int or None
            The arms K (some may have no logged rows); None: the largest logged index + 1.
        scored : ScoredRows or None
            Outcomes observed outside the logs (an evaluation set): the outcome models of every fold
            and the final ones are fitted on them too (see :class:`ScoredRows`).
        """
        if self.propensity not in ("fitted", "logged"):
            raise ValueError(f"propensity must be 'fitted' or 'logged', got {self.propensity!r}")
        if self.propensity == "logged" and logged_propensity is None:
            raise ValueError("propensity='logged' needs the logs' 'propensity' column")
        X, t, K = check_fit_inputs(X, treatment, quality, cost, n_arms=n_arms)
        for name, v in (("input_tokens", input_tokens), ("output_tokens", output_tokens),
                        ("logged_propensity", logged_propensity), ("groups", groups)):
            if v is not None and len(v) != len(t):
                raise ValueError(f"Expected `{name}.shape[0] == treatment.shape[0]`, but found it False "
                                 f"({len(v)} != {len(t)})")
        quality, cost = np.asarray(quality, dtype=float), np.asarray(cost, dtype=float)
        if scored is not None:
            _check_scored(scored, X.shape[1], K, input_tokens, output_tokens)
        self.n_arms_, self.n_features_in_ = K, X.shape[1]
        n = len(X)
        if groups is not None:
            splitter = GroupKFold(n_splits=self.cv).split(X, t, groups)
        elif np.bincount(t)[np.bincount(t) > 0].min() >= self.cv:
            splitter = StratifiedKFold(self.cv, shuffle=True, random_state=self.random_state).split(X, t)
        else:  # a model logged fewer times than there are folds cannot be stratified
            splitter = KFold(self.cv, shuffle=True, random_state=self.random_state).split(X, t)
        e_oof = np.zeros((n, K))
        q_oof = np.zeros((n, K))
        c_oof = np.zeros((n, K))
        folds = np.full(n, -1)
        self.fold_indices_ = list(splitter)
        jobs = [(self, X, t, quality, cost, input_tokens, output_tokens, tr, te, K, scored)
                for tr, te in self.fold_indices_]
        outputs = fold_map(fit_fold, jobs) if fold_map is not None else [fit_fold(*job) for job in jobs]
        for f, ((_, te), (e, q, c)) in enumerate(zip(self.fold_indices_, outputs)):
            e_oof[te], q_oof[te], c_oof[te], folds[te] = e, q, c, f
        self.propensity_model_, self.quality_model_, self.cost_model_ = self._fit_models(
            X, t, quality, cost, input_tokens, output_tokens, K, scored
        )
        self.nuisances_ = Nuisances(
            propensity=e_oof,
            logged_propensity=self._logged(e_oof, t, logged_propensity),
            quality=q_oof,
            cost=c_oof,
            folds=folds,
        )
        return self

    def _logged(self, e, t, logged_propensity):
        if self.propensity == "logged":
            if logged_propensity is None:
                raise ValueError("propensity='logged' needs these logs' 'propensity' column")
            return np.asarray(logged_propensity, dtype=float)
        return e[np.arange(len(t)), t]

    def predict(self, X, treatment=None, input_tokens=None, logged_propensity=None) -> Nuisances:
        """Nuisances for new rows from the models refitted on all training logs.

        X : (m, d); treatment : (m,) int or None (needed for ``logged_propensity``).
        """
        X = check_predict_X(self, X)
        e = self.propensity_model_.predict_proba(X)
        lp = None
        if treatment is not None:
            lp = self._logged(e, np.asarray(treatment, dtype=int), logged_propensity)
        return Nuisances(
            propensity=e,
            logged_propensity=lp,
            quality=self.quality_model_.predict(X, input_tokens),
            cost=self.cost_model_.predict(X, input_tokens),
        )
