"""Per-model outcome models: quality ``mu^a_t(x)`` and cost ``mu^c_t(x)``.

Every model here follows scikit-learn's estimator contract and a multi-arm signature:
``fit(X, treatment, y, input_tokens=None, output_tokens=None)`` and ``predict(X, input_tokens=None)``
returning one column per model (arm). The number of arms comes from the data: ``fit``'s
``n_arms`` (the arms of the model list, some possibly without rows), else the largest logged index + 1.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.linear_model import Ridge

from .checks import check_fit_inputs, check_predict_X


def _check_arms(treatment: np.ndarray, n_arms: int) -> None:
    missing = sorted(set(range(n_arms)) - set(np.unique(treatment).tolist()))
    if missing:
        raise ValueError(f"no logged rows for model index(es) {missing}: cannot fit their outcome models")


class PerArmRegressor(BaseEstimator):
    """One clone of ``estimator`` per arm, fitted on the rows where that arm was logged.

    Parameters
    ----------
    estimator : scikit-learn regressor, default Ridge(alpha=10)
    clip : tuple (low, high) or None
        Bounds applied to predictions (e.g. (0, 1) for quality).
    """

    def __init__(self, estimator=None, clip=None):
        self.estimator = estimator
        self.clip = clip

    def fit(self, X, treatment, y, input_tokens=None, output_tokens=None, n_arms: int | None = None):
        """X: (n, d); treatment: (n,) int in [0, n_arms); y: (n,)."""
        X, t, self.n_arms_ = check_fit_inputs(X, treatment, y, n_arms=n_arms)
        self.n_features_in_ = X.shape[1]
        y = np.asarray(y, dtype=float)
        _check_arms(t, self.n_arms_)
        base = self.estimator if self.estimator is not None else Ridge(alpha=10.0)
        self.estimators_ = [clone(base).fit(X[t == k], y[t == k]) for k in range(self.n_arms_)]
        return self

    def predict(self, X, input_tokens=None):
        """Returns (n, n_arms_)."""
        X = check_predict_X(self, X)
        out = np.column_stack([m.predict(X) for m in self.estimators_])
        return np.clip(out, *self.clip) if self.clip is not None else out


class PooledRidge(RegressorMixin, BaseEstimator):
    """Multi-task ridge: ``mu_t(x) = b_t + x.w + x.v_t`` with ``v_t`` penalised more than ``w``.

    Small logs per model (a few hundred rows each) make independent per-model fits noisy;
    sharing a component across models borrows strength while ``v_t`` keeps them distinct
    (Evgeniou and Pontil's regularised multi-task learning).

    Parameters
    ----------
    alpha : float
        Ridge penalty on the shared weights ``w``.
    arm_penalty : float
        How many times more the per-arm deviations ``v_t`` are penalised than ``w``.
    arm_prior : float
        Penalty on the per-arm offsets ``b_t`` (about a pseudo-count of rows at the common mean):
        a model logged a dozen times is pulled towards the others instead of trusted blindly.
    clip : tuple or None
    require_all_arms : bool
        False lets arms without logged rows through (they get the shared prediction), e.g. for
        evaluating on small held-out logs.
    """

    def __init__(self, alpha: float = 10.0, arm_penalty: float = 3.0, arm_prior: float = 30.0,
                 clip=(0.0, 1.0), require_all_arms: bool = True):
        self.require_all_arms = require_all_arms
        self.alpha = alpha
        self.arm_penalty = arm_penalty
        self.arm_prior = arm_prior
        self.clip = clip

    def _design(self, X, treatment):
        n, d = X.shape
        onehot = np.zeros((n, self.n_arms_))
        onehot[np.arange(n), treatment] = 1.0
        # scaling a feature block by s makes its effective penalty alpha / s**2
        s = 1.0 / np.sqrt(self.arm_penalty)
        inter = (onehot[:, :, None] * X[:, None, :]).reshape(n, -1) * s
        return np.hstack([X, onehot * self._bias_scale(), inter])

    def _bias_scale(self) -> float:
        return float(np.sqrt(self.alpha / self.arm_prior)) if self.arm_prior > 0 else 1e3

    def fit(self, X, treatment, y, input_tokens=None, output_tokens=None, n_arms: int | None = None,
            sample_weight=None):
        """X: (n, d); treatment: (n,) int in [0, n_arms); y: (n,); sample_weight: (n,) or None."""
        X, t, self.n_arms_ = check_fit_inputs(X, treatment, y, n_arms=n_arms)
        self.n_features_in_ = X.shape[1]
        if self.require_all_arms:
            _check_arms(t, self.n_arms_)
        self.ridge_ = Ridge(alpha=self.alpha).fit(self._design(X, t), np.asarray(y, dtype=float),
                                                  sample_weight=sample_weight)
        return self

    def predict(self, X, input_tokens=None):
        """Returns (n, n_arms_)."""
        X = check_predict_X(self, X)
        d, K = X.shape[1], self.n_arms_
        coef = self.ridge_.coef_
        w, bias = coef[:d], coef[d:d + K] * self._bias_scale()
        V = coef[d + K:].reshape(K, d) / np.sqrt(self.arm_penalty)
        # the design's blocks, multiplied out: x.w + b_t + x.v_t
        out = X @ (w[:, None] + V.T) + bias + self.ridge_.intercept_
        return np.clip(out, *self.clip) if self.clip is not None else out


class TokenCostModel(BaseEstimator):
    """Cost from a price sheet and token counts: ``cost_t(x) = p_in_t * in(x) + p_out_t * E[out_t | x]``.

    Cost is nearly deterministic given the model and the prompt's length, so it is computed,
    not learned from embeddings. Prices (USD per token) come from ``prices`` or, when absent,
    are recovered from the logged rows by non-negative least squares (exact when the logs'
    costs were computed from tokens). Output tokens, when logged, are predicted per model by
    a ridge regression on ``[x, log1p(input_tokens)]``. Without token counts, falls back to a
    per-model ridge regression of cost on ``x``.

    Parameters
    ----------
    prices : ndarray of shape (n_arms, 2) or None
        USD per *million* input and output tokens, in arm order (its rows fix the number of arms).
    alpha : float
        Ridge penalty of the output-token model (and of the fallback cost model).
    """

    def __init__(self, prices=None, alpha: float = 10.0):
        self.prices = prices
        self.alpha = alpha

    def fit(self, X, treatment, y, input_tokens=None, output_tokens=None, n_arms: int | None = None):
        """X: (n, d); treatment: (n,); y: (n,) logged cost; input_tokens: (n,); output_tokens: (n,).

        With a price sheet, models without logged rows are allowed (their output tokens are
        predicted by a model pooled over all rows); without one, every model needs rows.
        """
        if n_arms is None and self.prices is not None:
            n_arms = len(self.prices)
        X, treatment, self.n_arms_ = check_fit_inputs(X, treatment, y, n_arms=n_arms)
        if self.prices is not None and np.shape(self.prices) != (self.n_arms_, 2):
            raise ValueError(f"prices must have shape (n_arms, 2) = ({self.n_arms_}, 2), got {np.shape(self.prices)}")
        self.n_features_in_ = X.shape[1]
        y = np.asarray(y, dtype=float)
        if self.prices is None or input_tokens is None:
            _check_arms(treatment, self.n_arms_)
        self.uses_tokens_ = input_tokens is not None
        if not self.uses_tokens_:
            self.fallback_ = PerArmRegressor(Ridge(alpha=self.alpha), clip=(0.0, None)).fit(
                X, treatment, y, n_arms=self.n_arms_
            )
            return self
        # for prompts whose token count is not given at prediction time
        self.tokens_model_ = Ridge(alpha=self.alpha).fit(X, np.log1p(np.asarray(input_tokens, dtype=float)))
        has_out = output_tokens is not None and not np.all(np.isnan(output_tokens))
        if has_out and np.isnan(output_tokens).any():
            raise ValueError(f"output_tokens is missing on {int(np.isnan(output_tokens).sum())} logged row(s): "
                             "give it on every row or on none")
        if self.prices is not None:
            self.prices_ = np.asarray(self.prices, dtype=float) / 1e6
        else:
            self.prices_ = np.zeros((self.n_arms_, 2))
            for k in range(self.n_arms_):
                m = treatment == k
                A = np.column_stack([input_tokens[m], output_tokens[m] if has_out else np.zeros(m.sum())])
                self.prices_[k] = nnls(A, y[m])[0]
        self.out_models_ = None
        if has_out:
            Z = self._z(X, input_tokens)
            pooled = None
            self.out_models_ = []
            for k in range(self.n_arms_):
                m = treatment == k
                if not m.any():
                    pooled = pooled or Ridge(alpha=self.alpha).fit(Z, output_tokens)
                self.out_models_.append(Ridge(alpha=self.alpha).fit(Z[m], output_tokens[m]) if m.any() else pooled)
        return self

    @staticmethod
    def _z(X, input_tokens):
        return np.hstack([X, np.log1p(np.asarray(input_tokens, dtype=float))[:, None]])

    def predict_output_tokens(self, X, input_tokens):
        """Returns (n, n_arms) expected output tokens (zeros when none were logged)."""
        if self.out_models_ is None:
            return np.zeros((len(X), self.n_arms_))
        Z = self._z(X, input_tokens)
        return np.clip(np.column_stack([m.predict(Z) for m in self.out_models_]), 0.0, None)

    def predict_input_tokens(self, X) -> np.ndarray:
        """Input tokens (n,) estimated from the prompts' features, for when the count is not given."""
        return np.expm1(self.tokens_model_.predict(X)).clip(0.0, None)

    def predict(self, X, input_tokens=None):
        """Returns (n, n_arms) expected cost in USD; without ``input_tokens`` the counts are
        estimated from the features (see :meth:`predict_input_tokens`)."""
        X = check_predict_X(self, X)
        if not self.uses_tokens_:
            return self.fallback_.predict(X)
        if input_tokens is None:
            input_tokens = self.predict_input_tokens(X)
        tin = np.asarray(input_tokens, dtype=float)[:, None]
        return tin * self.prices_[:, 0] + self.predict_output_tokens(X, input_tokens) * self.prices_[:, 1]
