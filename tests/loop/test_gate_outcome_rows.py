"""The loop's gate with ``promote.outcome_rows``: a new model with few held-out rows that is truly better
is promoted when the evidence's outcome models also learn from the training logs, and not on the
held-out rows alone (issue 31, ``new-model``)."""

import numpy as np
import pandas as pd
import pytest

from causal_router.causal.nuisances import NuisanceConfig
from causal_router.data import schema as S
from causal_router.loop.steps import gate
from causal_router.policy.data import log_support

MODELS = ["cheap", "strong", "new"]
QUALITY = {"cheap": 0.3, "strong": 0.7, "new": 0.9}  # the new model is the best everywhere
PRICES = {m: (1.0, 0.0) for m in MODELS}


def logs(n, probs, seed):
    """Logs (n rows) drawn with the probabilities ``probs`` (K,) on every row, and their features (n, 3)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    t = rng.choice(len(MODELS), size=n, p=probs)
    models = np.array(MODELS)[t]
    tokens = rng.integers(50, 500, size=n).astype(float)
    frame = pd.DataFrame({
        S.PROMPT_ID: [f"p{seed}-{i}" for i in range(n)], S.PROMPT: [f"prompt {seed} {i}" for i in range(n)],
        S.MODEL: models, S.SCORE: rng.binomial(1, [QUALITY[m] for m in models]).astype(float),
        S.COST: tokens * 1e-6, S.INPUT_TOKENS: tokens, S.PROPENSITY: np.asarray(probs)[t],
        S.PROPENSITIES: [S.propensities_json(MODELS, probs)] * n,
    })
    return frame, X


class Always:
    """A router that sends every row to one model (one-hot probabilities)."""

    def __init__(self, k):
        self.k = k

    def predict_proba(self, X, lam, input_tokens=None):
        out = np.zeros((len(X), len(MODELS)))
        out[:, self.k] = 1.0
        return out


class Set:
    """The part of a RouterSet the gate reads."""

    def __init__(self, k):
        self.models, self.lambdas, self._router = list(MODELS), [0.0], Always(k)

    def get(self, method):
        return self._router


@pytest.fixture(scope="module")
def world():
    holdout = logs(400, [0.48, 0.50, 0.02], seed=1)  # the new model: a handful of held-out rows
    train = logs(2000, [0.45, 0.45, 0.10], seed=2)  # ... and a few hundred in the training logs
    return holdout, train


def decide(world, outcome_rows, no_overlap="switch"):
    (holdout, Xh), train = world
    return gate(Set(2), Set(1), holdout, Xh, 0.0, "rm-softmax", NuisanceConfig(propensity="logged"), PRICES,
                overlap=0.1, no_overlap=no_overlap, outcome_rows=outcome_rows, support=[train])


def test_training_rows_let_the_gate_see_a_better_new_model_that_the_holdout_alone_undervalues(world):
    (holdout, _), (train, _) = world
    n_new = int((holdout[S.MODEL] == "new").sum())
    assert 1 <= n_new <= 15
    alone = decide(world, "holdout")
    assert not alone.promoted and alone.difference.value < 0  # the pooled model pulls "new" to the mean
    assert alone.outcome_rows_per_model == alone.rows_per_model
    both = decide(world, "train+holdout")
    assert both.promoted and both.difference.value > 0.05  # truly +0.2 (+0.11 here: still shrunk)
    assert both.rows_per_model["new"] == n_new
    assert both.outcome_rows_per_model["new"] == n_new + int((train[S.MODEL] == "new").sum())
    assert "training rows per model" in both.reason
    # the default is the holdout alone: unchanged
    assert decide(world, None).difference == alone.difference


def test_outcome_rows_is_checked(world):
    with pytest.raises(ValueError, match="outcome_rows must be one of"):
        decide(world, "everything")


def test_support_leaves_out_models_outside_the_list_and_checks_its_shapes():
    frame, X = logs(50, [0.4, 0.4, 0.2], seed=3)
    rows = log_support([(frame, X)], ["cheap", "strong"])
    assert len(rows) == int(frame[S.MODEL].isin(["cheap", "strong"]).sum()) and rows.X.shape == (len(rows), 3)
    assert set(rows.treatment.tolist()) <= {0, 1}
    assert log_support(None, MODELS) is None and log_support([(frame.iloc[:0], X[:0])], MODELS) is None
    with pytest.raises(ValueError, match="support features must have shape"):
        log_support([(frame, X[:10])], MODELS)
