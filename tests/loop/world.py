"""A synthetic full-feedback world with a hidden good model that the incumbent rarely plays."""

import numpy as np

from causal_router.data.matrices import FullFeedback
from causal_router.data.synthetic import make_synthetic

HIDDEN = "model-hidden"
#: USD per million input tokens: the three visible models, then the hidden one (dear, so the
#: cost-biased incumbent all but ignores it).
PRICES = (0.05, 0.1, 0.15, 1.5)
LAM = 200.0


def hidden_world(n: int = 1500, seed: int = 0):
    """(FullFeedback with 4 models, features X (n, 4), price sheet). At ``LAM`` the hidden model's
    utility beats every visible model's on the half of the prompts where it is good."""
    syn = make_synthetic(n=n, d=4, n_models=3, seed=seed)
    tokens = syn.logs["input_tokens"].to_numpy(dtype=float)
    w = np.random.default_rng(seed + 1).normal(size=syn.X.shape[1])
    good = syn.X @ w > 0  # the hidden model is excellent on half the prompts, poor on the rest
    quality = np.column_stack([syn.mean_quality, np.where(good, 1.0, 0.2)])
    cost = tokens[:, None] * np.array(PRICES)[None, :] / 1e6
    models = np.array([*syn.models, HIDDEN])
    ff = FullFeedback(prompt_ids=np.array([f"p{i}" for i in range(n)]),
                      prompts=np.array([f"synthetic prompt {i}" for i in range(n)]), models=models,
                      scores=quality, costs=cost, datasets=None, input_tokens=tokens, output_tokens=None,
                      propensities=None)
    prices = {str(m): (p, 0.0) for m, p in zip(models, PRICES)}
    return ff, syn.X, prices
