"""Off-the-shelf causal peers for benchmarks (optional dependency: ``pip install .[bench]``)."""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, Ridge

from causal_router.policy.data import RoutingData
from causal_router.policy.routers import Router


class EconMLDRPolicyForestRouter(Router):
    """EconML's ``DRPolicyForest`` per lambda, on PCA-reduced embeddings, with its own nuisance
    fitting (ridge outcome, logistic propensity, ``cv`` folds) on the raw logged utility
    ``score - lambda * cost``. Lambdas off the grid use the nearest grid point.

    Parameters
    ----------
    n_components : int   PCA dimensions (forests split poorly on 384 dense dimensions)
    n_estimators, min_samples_leaf, cv, random_state : passed to DRPolicyForest

    ``min_samples_leaf`` 40: with small leaves the forest's choices flip between fp32 and bf16
    embeddings of the same prompts on the same logs.
    """

    name = "econml-drpolicyforest"

    def __init__(self, n_components: int = 20, n_estimators: int = 100, min_samples_leaf: int = 40, cv: int = 3,
                 random_state: int = 0):
        self.n_components = n_components
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.cv = cv
        self.random_state = random_state

    def fit(self, data: RoutingData, lambdas):
        from econml.policy import DRPolicyForest

        self.n_arms_ = data.n_arms
        self.lambdas_ = np.array(sorted(float(x) for x in lambdas))
        # DRPolicyForest predicts an index into the sorted logged arms
        self.arms_ = np.unique(data.treatment)
        self.pca_ = PCA(self.n_components, random_state=self.random_state).fit(data.X)
        Z = self.pca_.transform(data.X)
        self.forests_ = []
        for lam in self.lambdas_:
            forest = DRPolicyForest(
                model_regression=Ridge(alpha=1.0), model_propensity=LogisticRegression(max_iter=1000),
                n_estimators=self.n_estimators, min_samples_leaf=self.min_samples_leaf, cv=self.cv,
                random_state=self.random_state,
            )
            forest.fit(data.quality - lam * data.cost, data.treatment, X=Z)
            self.forests_.append(forest)
        return self

    def scores(self, X, lam, input_tokens=None):
        forest = self.forests_[int(np.abs(self.lambdas_ - lam).argmin())]
        chosen = self.arms_[np.asarray(forest.predict(self.pca_.transform(X)), dtype=int)]
        out = np.zeros((len(X), self.n_arms_))
        out[np.arange(len(X)), chosen] = 1.0
        return out
