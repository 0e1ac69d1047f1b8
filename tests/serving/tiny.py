"""A tiny router and encoder for the service tests: known scores, no torch, no real encoder.

Importable by a server started in a subprocess (``serve.encoder: tests.serving.tiny:TinyEncoder``).
"""

import hashlib

import numpy as np

D = 4
MODELS = ["model-a", "model-b", "model-c"]
LAMS = [0.0, 100.0]
TOKENS_PER_CHAR = 0.25


class TinyEncoder:
    """Deterministic features in [-1, 1]^4 from a prompt's hash."""

    key = "tiny-d4"
    dim = D

    def __init__(self):
        self.calls = []  # batch sizes, for the micro-batching test

    def encode(self, texts):
        self.calls.append(len(texts))
        out = np.empty((len(texts), D), dtype=np.float32)
        for i, t in enumerate(texts):
            h = hashlib.sha256(t.encode()).digest()
            out[i] = np.frombuffer(h[: 4 * D], dtype=np.uint32) / 2**31 - 1.0
        return out


class LinearRouter:
    """scores = X @ W - lam * unit_cost: model-c is best at lam 0 on most prompts, model-a (free) at lam 100."""

    n_arms_ = 3

    def __init__(self):
        self.W = np.array([[0.0, 0.2, 0.5], [0.0, 0.1, 0.3], [0.0, -0.1, 0.2], [0.0, 0.0, 0.1]])
        self.unit_cost = np.array([0.0, 0.004, 0.01])

    def scores(self, X, lam, input_tokens=None):
        base = np.asarray(X, dtype=float) @ self.W + np.array([0.0, 0.4, 0.8])
        return base - float(lam) * self.unit_cost

    def predict(self, X, lam, input_tokens=None):
        return self.scores(X, lam, input_tokens).argmax(1)


def routerset(version_tag: int = 0):
    from causal_router.policy.routerset import RouterSet

    return RouterSet(list(MODELS), list(LAMS), {"rm-interval": LinearRouter()}, TinyEncoder.key,
                     {"n_features": D, "tokens_per_char": TOKENS_PER_CHAR, "tag": version_tag})
