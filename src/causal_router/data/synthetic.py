"""Synthetic logs with known propensities, potential outcomes and optimal policy (for tests and docs)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import schema as S


@dataclass
class SyntheticLogs:
    """Observational logs plus the ground truth behind them.

    Attributes
    ----------
    logs : DataFrame, one row per prompt (prompt_id, prompt, model, score, cost, propensity, input_tokens)
    X : ndarray (n, d)            features
    mean_quality : ndarray (n, K) E[score | x, t]
    cost : ndarray (n, K)         cost of each model on each prompt (deterministic)
    propensity : ndarray (n, K)   logging policy P(t | x)
    treatment : ndarray (n,)      logged model index
    models : list of str (K,)
    """

    logs: pd.DataFrame
    X: np.ndarray
    mean_quality: np.ndarray
    cost: np.ndarray
    propensity: np.ndarray
    treatment: np.ndarray
    models: list

    def subset(self, idx) -> SyntheticLogs:
        """The same problem restricted to rows ``idx``."""
        idx = np.asarray(idx)
        return SyntheticLogs(self.logs.iloc[idx].reset_index(drop=True), self.X[idx], self.mean_quality[idx],
                             self.cost[idx], self.propensity[idx], self.treatment[idx], self.models)

    def utility(self, lam: float) -> np.ndarray:
        """True expected utility (n, K) at ``lam``."""
        return self.mean_quality - lam * self.cost

    def optimal_policy(self, lam: float) -> np.ndarray:
        """Optimal model index per prompt (n,)."""
        return self.utility(lam).argmax(1)

    def value(self, actions: np.ndarray, lam: float) -> float:
        """True mean utility of deterministic ``actions`` (n,)."""
        return float(self.utility(lam)[np.arange(len(actions)), actions].mean())


def make_synthetic(n: int = 2000, d: int = 4, n_models: int = 3, confounding: float = 2.0,
                   separation: float = 4.0, seed: int = 0) -> SyntheticLogs:
    """Logs where each model is best on its own region of feature space.

    ``mean_quality_t(x) = 0.5 + 0.4 tanh(separation * x . w_t)``, costs are token-priced
    (``price_t * input_tokens``), and the logger prefers the model it believes best:
    ``P(t | x) = 0.9 softmax(confounding * mean_quality(x)) + 0.1 / K``, so logged outcomes are
    confounded by x (high-quality rows are over-represented for every model).
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    W = rng.normal(size=(d, n_models))
    W /= np.linalg.norm(W, axis=0)
    mq = 0.5 + 0.4 * np.tanh(separation * X @ W)
    tokens = np.round(200 * np.exp(0.3 * X[:, 0])).astype(float)
    prices = np.linspace(1.0, 3.0, n_models)  # USD per million tokens
    cost = tokens[:, None] * prices[None, :] / 1e6
    logits = confounding * 5 * mq
    p = np.exp(logits - logits.max(1, keepdims=True))
    p = 0.9 * p / p.sum(1, keepdims=True) + 0.1 / n_models
    t = np.array([rng.choice(n_models, p=row) for row in p])
    rows = np.arange(n)
    models = [f"model-{k}" for k in range(n_models)]
    logs = pd.DataFrame({
        S.PROMPT_ID: [f"p{i}" for i in rows],
        S.PROMPT: [f"synthetic prompt {i}" for i in rows],
        S.MODEL: [models[k] for k in t],
        S.SCORE: rng.binomial(1, mq[rows, t]).astype(float),
        S.COST: cost[rows, t],
        S.PROPENSITY: p[rows, t],
        S.INPUT_TOKENS: tokens,
    })
    return SyntheticLogs(logs, X, mq, cost, p, t, models)
