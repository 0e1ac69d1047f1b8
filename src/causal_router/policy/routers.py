"""The router interface and the simple baselines. Each is fitted on :class:`RoutingData` and routes at any lambda
(the regret-minimising routers: :mod:`.regret`; names: :mod:`.catalog`).

``scores(X, lam, input_tokens) -> (n, K)``: higher is better; ``predict`` takes the argmax;
``predict_proba`` gives the policy's probabilities (one-hot except for ``random``).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import Ridge

from .data import RoutingData


def linear_predict(est: Ridge, X) -> np.ndarray:
    """``est.predict(X)`` for a fitted linear model, without sklearn's per-call input validation (about a
    millisecond a call, most of a served request's scoring): the same product, ``X @ coef_.T + intercept_``."""
    if not isinstance(X, np.ndarray):  # sparse matrices, data frames: sklearn's own path
        return est.predict(X)
    d = getattr(est, "n_features_in_", None)
    if X.ndim != 2 or (d is not None and X.shape[1] != d):
        raise ValueError(f"{type(est).__name__} was fitted on (n, {d}) features, got an array of shape {X.shape}")
    return X @ est.coef_.T + est.intercept_


def onehot(arms: np.ndarray, K: int) -> np.ndarray:
    out = np.zeros((len(arms), K))
    out[np.arange(len(arms)), arms] = 1.0
    return out


class Router(BaseEstimator):
    """Base class: subclasses implement ``fit(data, lambdas)`` and ``scores``."""

    name = "router"

    def fit(self, data: RoutingData, lambdas) -> Router:
        raise NotImplementedError

    def scores(self, X, lam: float, input_tokens=None) -> np.ndarray:
        raise NotImplementedError

    def posterior(self, X, lam: float, input_tokens=None):
        """(mean (n, K), sd (K,)) of each model's utility, for Thompson-style exploration
        (:mod:`causal_router.policy.posterior`); None when the router holds no outcome model."""
        return None

    def _fitted_on(self, data: RoutingData) -> None:
        """Record what fit saw: the number of arms (from the data) and of features."""
        X = np.asarray(data.X)
        # full-feedback data (the benchmark's skyline) has utilities but no logged treatment
        n = len(data.treatment) if data.treatment is not None else len(data.utilities.quality)
        if X.ndim != 2 or len(X) != n:
            raise ValueError(f"data.X must have shape (n, d) with n = {n} rows, got {X.shape}")
        self.n_arms_ = data.n_arms
        self.n_features_in_ = X.shape[1]

    def _check_X(self, X) -> np.ndarray:
        X = np.asarray(X)
        d = getattr(self, "n_features_in_", None)
        if X.ndim != 2 or (d is not None and X.shape[1] != d):
            raise ValueError(f"{type(self).__name__} was fitted on (n, {d}) features, got an array of shape {X.shape}")
        return X

    def predict(self, X, lam: float, input_tokens=None) -> np.ndarray:
        """Chosen arm index per prompt, shape (n,), for features X (n, d)."""
        return self.scores(self._check_X(X), lam, input_tokens).argmax(1)

    def predict_proba(self, X, lam: float, input_tokens=None) -> np.ndarray:
        """Routing probabilities, shape (n, K), for features X (n, d)."""
        return onehot(self.predict(X, lam, input_tokens), self.n_arms_)


class RandomRouter(Router):
    """Uniformly random routing (its value is the mean over models)."""

    name = "random"

    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, data, lambdas):
        self._fitted_on(data)
        return self

    @classmethod
    def for_models(cls, n_arms: int, random_state=None) -> RandomRouter:
        """A random router over ``n_arms`` models (it learns nothing, so needs no data)."""
        router = cls(random_state)
        router.n_arms_ = n_arms
        return router

    def scores(self, X, lam, input_tokens=None):
        return np.random.default_rng(self.random_state).random((len(X), self.n_arms_))

    def predict_proba(self, X, lam, input_tokens=None):
        return np.full((len(self._check_X(X)), self.n_arms_), 1.0 / self.n_arms_)


class _ConstantRouter(Router):
    def scores(self, X, lam, input_tokens=None):
        return np.tile(self._arm_scores(lam), (len(X), 1))


class CheapestRouter(_ConstantRouter):
    """Always the model with the lowest DR mean cost on the training logs."""

    name = "cheapest"

    def fit(self, data, lambdas):
        self._fitted_on(data)
        self.mean_cost_ = data.utilities.cost.mean(0)
        return self

    def _arm_scores(self, lam):
        return -self.mean_cost_


class BestSingleRouter(_ConstantRouter):
    """Always the model with the best DR mean utility at lambda (training and validation logs)."""

    name = "best-single"

    def fit(self, data, lambdas):
        self._fitted_on(data)
        u = [data.utilities] + ([data.val_utilities] if data.val_utilities is not None else [])
        self.mean_quality_ = np.concatenate([x.quality for x in u]).mean(0)
        self.mean_cost_ = np.concatenate([x.cost for x in u]).mean(0)
        return self

    def _arm_scores(self, lam):
        return self.mean_quality_ - lam * self.mean_cost_


class NaiveRouter(Router):
    """Direct method without bias correction: outcome models fitted on logged rows, argmax of
    predicted utility."""

    name = "naive"

    def fit(self, data, lambdas):
        self._fitted_on(data)
        self.quality_model_ = data.crossfitter.quality_model_
        self.cost_model_ = data.crossfitter.cost_model_
        self.arm_posterior_ = data.arm_posterior
        return self

    def scores(self, X, lam, input_tokens=None):
        return self.quality_model_.predict(X, input_tokens) - lam * self.cost_model_.predict(X, input_tokens)

    def posterior(self, X, lam, input_tokens=None):
        ap = getattr(self, "arm_posterior_", None)  # None in routers pickled before it existed
        return None if ap is None else (self.scores(self._check_X(X), lam, input_tokens), ap.sd())


class DRRegressRouter(Router):
    """Regress-and-compare: ridge regression of the DR quality and cost pseudo-outcomes on x."""

    name = "dr-regress"

    def __init__(self, alpha: float = 10.0):
        self.alpha = alpha

    def fit(self, data, lambdas):
        self._fitted_on(data)
        self.quality_ = Ridge(alpha=self.alpha).fit(data.X, data.utilities.quality)
        self.cost_ = Ridge(alpha=self.alpha).fit(data.X, data.utilities.cost)
        return self

    def scores(self, X, lam, input_tokens=None):
        return linear_predict(self.quality_, X) - lam * linear_predict(self.cost_, X)
