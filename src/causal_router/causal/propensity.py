"""Propensity model ``e_t(x) = P(t | x)`` of the logging policy."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression


class PropensityModel(BaseEstimator):
    """Multinomial classifier of the logged model, returning one column per arm.

    Parameters
    ----------
    estimator : scikit-learn classifier with ``predict_proba``, default LogisticRegression(C=1)
    n_arms : int
    """

    def __init__(self, estimator=None, n_arms: int = 2):
        self.estimator = estimator
        self.n_arms = n_arms

    def fit(self, X, treatment):
        """X: (n, d); treatment: (n,) int in [0, n_arms)."""
        base = self.estimator if self.estimator is not None else LogisticRegression(C=1.0, max_iter=2000)
        self.estimator_ = clone(base).fit(X, treatment)
        return self

    def predict_proba(self, X):
        """Returns (n, n_arms); arms unseen in training get probability 0."""
        proba = np.zeros((len(X), self.n_arms))
        proba[:, self.estimator_.classes_.astype(int)] = self.estimator_.predict_proba(X)
        return proba
