"""Named, seeded, confounded logging policies for a full-feedback table (issue 32), and the two-model
sub-tables (a strong expensive model and a cheap one) the study also runs on.

Families (each draws its own seed; every policy mixes ``1 - FLOOR_WEIGHT`` of a confounded softmax
with ``FLOOR_WEIGHT`` uniform, so every model keeps probability >= FLOOR_WEIGHT / K: ignorability holds):

- ``cost``: cheaper models favoured (``data.logging_policies`` cost-biased: price term, a random
  projection of the prompt and per-source preferences), strength beta;
- ``length``: long prompts sent to dearer (or cheaper) models: logits ``gamma * z(length) * z(log cost)``;
- ``cluster``: k-means clusters of the embeddings, each with random model preferences;
- ``prevrouter``: a previous router (ridge on a small full-feedback slice, ``data.logging_policies``),
  at a cost weight and a temperature;
- ``oracle``: prefers the model truly better on the prompt (table outcomes at a cost weight) plus
  Gaussian noise: the strongest confounding ignorability allows;
- ``mixture``: convex mixtures of two of the above.

The FROZEN SPLIT (:data:`SPLIT`) says which loggers tune anything and which report; it was declared
before any result existed and must never change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from causal_router.data.logging_policies import logging_probabilities
from causal_router.data.matrices import FullFeedback
from causal_router.data.simulate import default_lam_log

#: Uniform share mixed into every logger: each model keeps probability >= FLOOR_WEIGHT / K.
FLOOR_WEIGHT = 0.05
FAMILIES = ("cost", "length", "cluster", "prevrouter", "oracle", "mixture")


@dataclass(frozen=True)
class LoggerSpec:
    """One logger: ``name`` (unique), ``family``, ``seed`` and its family's parameters."""

    name: str
    family: str
    seed: int
    params: tuple = ()


# name, family, seed, params. Seeds differ across loggers: each logger also seeds its run's split.
SPECS = (
    LoggerSpec("cost-b1", "cost", 101, (("beta", 1.0),)),
    LoggerSpec("cost-b2", "cost", 102, (("beta", 2.0),)),
    LoggerSpec("cost-b3", "cost", 103, (("beta", 3.0),)),
    LoggerSpec("cost-b5", "cost", 104, (("beta", 5.0),)),
    LoggerSpec("length-up1", "length", 201, (("gamma", 1.0),)),
    LoggerSpec("length-down1", "length", 202, (("gamma", -1.0),)),
    LoggerSpec("length-up3", "length", 203, (("gamma", 3.0),)),
    LoggerSpec("length-down3", "length", 204, (("gamma", -3.0),)),
    LoggerSpec("cluster-k8-s2", "cluster", 301, (("k", 8), ("scale", 2.0))),
    LoggerSpec("cluster-k8-s4", "cluster", 302, (("k", 8), ("scale", 4.0))),
    LoggerSpec("cluster-k16-s3", "cluster", 303, (("k", 16), ("scale", 3.0))),
    LoggerSpec("cluster-k4-s3", "cluster", 304, (("k", 4), ("scale", 3.0))),
    LoggerSpec("prevrouter-mid-75", "prevrouter", 401, (("lam_mult", 1.0), ("target", 0.75))),
    LoggerSpec("prevrouter-q-75", "prevrouter", 402, (("lam_mult", 0.0), ("target", 0.75))),
    LoggerSpec("prevrouter-mid-90", "prevrouter", 403, (("lam_mult", 1.0), ("target", 0.9))),
    LoggerSpec("prevrouter-hi-60", "prevrouter", 404, (("lam_mult", 3.0), ("target", 0.6))),
    LoggerSpec("oracle-n025", "oracle", 501, (("noise", 0.25),)),
    LoggerSpec("oracle-n05", "oracle", 502, (("noise", 0.5),)),
    LoggerSpec("oracle-n1", "oracle", 503, (("noise", 1.0),)),
    LoggerSpec("oracle-n2", "oracle", 504, (("noise", 2.0),)),
    LoggerSpec("mix-cost3-oracle05", "mixture", 601, (("parts", ("cost-b3", "oracle-n05")), ("w", 0.5))),
    LoggerSpec("mix-length3-cluster8", "mixture", 602, (("parts", ("length-up3", "cluster-k8-s4")), ("w", 0.5))),
    LoggerSpec("mix-prev90-cost5", "mixture", 603, (("parts", ("prevrouter-mid-90", "cost-b5")), ("w", 0.5))),
    LoggerSpec("mix-oracle1-length3", "mixture", 604, (("parts", ("oracle-n1", "length-down3")), ("w", 0.3))),
)

# FROZEN SPLIT, declared before any result existed (issue 32): half of each family tunes (rules,
# defaults, pessimism, candidates), the other half only reports. It must never change.
SPLIT = {
    "cost-b1": "tune", "cost-b3": "tune", "cost-b2": "report", "cost-b5": "report",
    "length-up1": "tune", "length-down3": "tune", "length-down1": "report", "length-up3": "report",
    "cluster-k8-s2": "tune", "cluster-k16-s3": "tune", "cluster-k8-s4": "report", "cluster-k4-s3": "report",
    "prevrouter-mid-75": "tune", "prevrouter-hi-60": "tune", "prevrouter-q-75": "report",
    "prevrouter-mid-90": "report",
    "oracle-n05": "tune", "oracle-n2": "tune", "oracle-n025": "report", "oracle-n1": "report",
    "mix-cost3-oracle05": "tune", "mix-oracle1-length3": "tune", "mix-length3-cluster8": "report",
    "mix-prev90-cost5": "report",
}

BY_NAME = {s.name: s for s in SPECS}


def _floored_softmax(logits: np.ndarray) -> np.ndarray:
    """(n, K) logits -> probabilities with every entry >= FLOOR_WEIGHT / K."""
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return (1 - FLOOR_WEIGHT) * e / e.sum(1, keepdims=True) + FLOOR_WEIGHT / logits.shape[1]


def _z(v: np.ndarray) -> np.ndarray:
    sd = v.std()
    return (v - v.mean()) / (sd if sd > 0 else 1.0)


def prompt_lengths(ff: FullFeedback) -> np.ndarray:
    """Input tokens per prompt (n,), or characters where the table has no token counts."""
    if ff.input_tokens is not None and np.all(np.isfinite(ff.input_tokens)):
        return np.asarray(ff.input_tokens, float)
    return np.array([len(str(p)) for p in ff.prompts], float)


def kmeans_labels(X: np.ndarray, k: int, seed: int, iters: int = 30) -> np.ndarray:
    """Cluster of each row of X (n, d) by seeded Lloyd iterations (k-means++ start), shape (n,)."""
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=1, max_iter=iters, random_state=seed).fit_predict(X)


def probabilities(spec: LoggerSpec | str, ff: FullFeedback, X: np.ndarray) -> np.ndarray:
    """Logger ``spec``'s probabilities (n_prompts, K) for every prompt of ``ff``; X (n_prompts, d)
    aligned with ``ff.prompt_ids``. Deterministic given the spec (its seed)."""
    spec = BY_NAME[spec] if isinstance(spec, str) else spec
    p, rng = dict(spec.params), np.random.default_rng(spec.seed)
    n, K = ff.n_prompts, ff.n_models
    if spec.family == "cost":
        logits = p["beta"] * _cost_logits(ff, X, spec.seed)
    elif spec.family == "length":
        log_cost = _z(np.log(np.maximum(np.nanmean(ff.costs, 0), 1e-12)))
        logits = p["gamma"] * np.outer(_z(np.log1p(prompt_lengths(ff))), log_cost)
    elif spec.family == "cluster":
        labels = kmeans_labels(X, int(p["k"]), spec.seed)
        logits = p["scale"] * rng.standard_normal((int(p["k"]), K))[labels]
    elif spec.family == "prevrouter":
        fit_idx = np.sort(rng.choice(n, size=max(2, n // 20), replace=False))  # a 5% full-feedback slice
        lam = p["lam_mult"] * default_lam_log(ff)
        probs, _ = logging_probabilities(ff, X, "previous-router", lam_log=lam, seed=spec.seed, fit_idx=fit_idx,
                                         target_max_prob=p["target"])
        return _refloor(probs)
    elif spec.family == "oracle":
        U = ff.utility(default_lam_log(ff))
        U = (U - U.mean(1, keepdims=True)) / (U.std() or 1.0)
        logits = 3.0 * (U + p["noise"] * rng.standard_normal((n, K)))
    elif spec.family == "mixture":
        a, b = (probabilities(BY_NAME[q], ff, X) for q in p["parts"])
        return p["w"] * a + (1 - p["w"]) * b
    else:
        raise ValueError(f"unknown family {spec.family!r}; families: {FAMILIES}")
    return _floored_softmax(logits)


def _cost_logits(ff: FullFeedback, X: np.ndarray, seed: int) -> np.ndarray:
    """The protocol's cost-biased logits at beta = 1 (n, K): price term, projection, source preferences."""
    from causal_router.data.logging_policies import _cost_biased_logits

    return _cost_biased_logits(ff, X, seed)


def _refloor(probs: np.ndarray) -> np.ndarray:
    """Raise a policy's floor to FLOOR_WEIGHT / K (the protocol's own floor is the same 0.05 / K)."""
    K = probs.shape[1]
    return np.maximum(probs, FLOOR_WEIGHT / K) / np.maximum(probs, FLOOR_WEIGHT / K).sum(1, keepdims=True)


def loggers(split: str | None = None) -> list[LoggerSpec]:
    """The declared loggers, optionally only those of one half (``"tune"`` or ``"report"``)."""
    return [s for s in SPECS if split is None or SPLIT[s.name] == split]


def two_model_pair(ff: FullFeedback) -> tuple[str, str]:
    """(strong, cheap): the model with the highest mean score and the one with the lowest mean cost
    (the cheapest other than the strong one)."""
    strong = int(np.nanmean(ff.scores, 0).argmax())
    cost = np.nanmean(ff.costs, 0).astype(float)
    cost[strong] = np.inf
    return str(ff.models[strong]), str(ff.models[int(cost.argmin())])


def sub_table(ff: FullFeedback) -> FullFeedback:
    """The two-model sub-table of ``ff`` (:func:`two_model_pair`): the same prompts, two model columns."""
    from dataclasses import replace

    order = [list(map(str, ff.models)).index(m) for m in two_model_pair(ff)]
    pick = lambda a: None if a is None else a[:, order]  # noqa: E731
    return replace(ff, models=ff.models[order], scores=ff.scores[:, order], costs=ff.costs[:, order],
                   output_tokens=pick(ff.output_tokens), propensities=pick(ff.propensities))
