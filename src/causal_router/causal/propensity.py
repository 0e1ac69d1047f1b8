"""Propensity model ``e_t(x) = P(t | x)`` of the logging policy."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression

from .checks import check_fit_inputs, check_predict_X


class PropensityModel(BaseEstimator):
    """Multinomial classifier of the logged model, returning one column per arm.

    Parameters
    ----------
    estimator : scikit-learn classifier with ``predict_proba``, default LogisticRegression(C=1)

    Attributes
    ----------
    n_arms_ : int            arms K (from ``fit``'s ``n_arms``, else the largest logged index + 1)
    n_features_in_ : int
    """

    def __init__(self, estimator=None):
        self.estimator = estimator

    def fit(self, X, treatment, n_arms: int | None = None):
        """X: (n, d); treatment: (n,) int in [0, n_arms); n_arms: the arms K (default: inferred from treatment)."""
        X, t, self.n_arms_ = check_fit_inputs(X, treatment, n_arms=n_arms)
        self.n_features_in_ = X.shape[1]
        base = self.estimator if self.estimator is not None else LogisticRegression(C=1.0, max_iter=2000)
        self.estimator_ = clone(base).fit(X, t)
        return self

    def predict_proba(self, X):
        """Returns (n, n_arms_); arms unseen in training get probability 0."""
        X = check_predict_X(self, X)
        proba = np.zeros((len(X), self.n_arms_))
        proba[:, self.estimator_.classes_.astype(int)] = self.estimator_.predict_proba(X)
        return proba
