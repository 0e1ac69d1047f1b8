"""The confounded loggers of issue 32 (:mod:`benchmarks.loggers`): enough of them, reproducible per seed,
every model above the floor, and a frozen tune/report split that halves every family."""

from collections import Counter

import numpy as np
import pytest

from benchmarks import loggers as L
from causal_router.data.matrices import FullFeedback

N, K, D = 300, 4, 8


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((N, D))
    scores = np.clip(0.5 + X @ (rng.standard_normal((D, K)) * 0.1) + np.linspace(0, 0.3, K), 0, 1)
    costs = np.tile(np.array([1.0, 2.0, 5.0, 20.0]) * 1e-3, (N, 1)) * rng.uniform(0.5, 1.5, (N, 1))
    ff = FullFeedback(prompt_ids=np.array([f"p{i}" for i in range(N)]), prompts=np.array(["x" * (i % 50 + 1)
                      for i in range(N)]), models=np.array([f"m{t}" for t in range(K)]), scores=scores, costs=costs,
                      input_tokens=rng.integers(5, 500, N).astype(float))
    return ff, X


def test_at_least_24_named_loggers_from_every_family():
    names = [s.name for s in L.SPECS]
    assert len(names) >= 24 and len(set(names)) == len(names)
    assert set(s.family for s in L.SPECS) == set(L.FAMILIES)
    assert len(set(s.seed for s in L.SPECS)) == len(names)


def test_split_is_half_and_half_per_family_and_disjoint():
    assert set(L.SPLIT) == {s.name for s in L.SPECS}
    assert set(L.SPLIT.values()) == {"tune", "report"}
    tune, report = L.loggers("tune"), L.loggers("report")
    assert not {s.name for s in tune} & {s.name for s in report}
    assert len(tune) + len(report) == len(L.SPECS)
    for fam in L.FAMILIES:
        count = Counter(L.SPLIT[s.name] for s in L.SPECS if s.family == fam)
        assert count["tune"] == count["report"] > 0, fam


@pytest.mark.parametrize("name", [s.name for s in L.SPECS])
def test_probabilities_are_reproducible_floored_and_confounded(table, name):
    ff, X = table
    P = L.probabilities(name, ff, X)
    assert P.shape == (N, K)
    np.testing.assert_allclose(P.sum(1), 1.0, atol=1e-9)
    assert P.min() >= L.FLOOR_WEIGHT / K - 1e-12           # ignorability: every model can be logged
    np.testing.assert_array_equal(P, L.probabilities(name, ff, X))
    assert P.std(0).max() > 1e-3 or np.ptp(P.mean(0)) > 1e-3  # not uniform


def test_a_different_seed_gives_a_different_logger(table):
    ff, X = table
    spec = L.BY_NAME["cluster-k8-s2"]
    other = L.LoggerSpec(spec.name, spec.family, spec.seed + 1, spec.params)
    assert not np.allclose(L.probabilities(spec, ff, X), L.probabilities(other, ff, X))


def test_two_model_sub_table_is_the_strong_model_and_the_cheapest_other(table):
    ff, _ = table
    sub = L.sub_table(ff)
    strong, cheap = L.two_model_pair(ff)
    assert strong == f"m{int(ff.scores.mean(0).argmax())}" and cheap != strong
    assert list(sub.models) == [strong, cheap] and sub.scores.shape == (N, 2)
    np.testing.assert_array_equal(sub.costs[:, 1], ff.costs[:, list(ff.models).index(cheap)])
