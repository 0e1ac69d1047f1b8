"""A holdout that forgets (serving/forget.py, ingest's change_z): a model whose outcomes changed restarts
the gate's holdout; the same world logged by another policy does not."""

from datetime import timedelta

import numpy as np
import pandas as pd

from causal_router.data import schema as S
from causal_router.serving.forget import shifts
from causal_router.serving.ingest import ingest
from causal_router.serving.store import DecisionStore
from tests.serving.test_ingest import T0, logs_dir  # noqa: F401 (fixture)


def _rows(n, p_a, mean_a, seed, start=0):
    """n logged rows: model-a drawn with probability p_a (else model-b); scores ~ Bernoulli(mean_a) for
    model-a, 0.5 for model-b."""
    rng = np.random.default_rng(seed)
    a = rng.random(n) < p_a
    return pd.DataFrame({S.PROMPT_ID: [f"p{start + i}" for i in range(n)], S.MODEL: np.where(a, "model-a", "model-b"),
                         S.SCORE: np.where(a, rng.random(n) < mean_a, 0.5).astype(float),
                         S.PROPENSITY: np.where(a, p_a, 1 - p_a)})


def test_a_changed_model_is_found_and_a_new_logging_policy_is_not():
    old = _rows(400, 0.3, 0.8, 0)
    assert shifts(old, _rows(400, 0.9, 0.8, 1), 5.0, 30) == []  # same world, another policy
    found = shifts(old, _rows(400, 0.9, 0.2, 2), 5.0, 30)
    assert [s.model for s in found] == ["model-a"] and found[0].z < -5
    assert shifts(old, _rows(20, 0.9, 0.2, 2), 5.0, 30) == []  # too few rows of it


def test_a_few_rows_drawn_with_a_small_probability_do_not_make_a_change():
    """Two exploration rows (propensity 0.005, score 0) outweigh 40 rows of the router's choice: the
    self-normalised mean falls to 0.1, but the effective rows (Kish) are about 2, below min_rows."""
    old = pd.DataFrame({S.MODEL: "model-a", S.SCORE: np.r_[np.ones(80), np.zeros(20)], S.PROPENSITY: 0.9})
    new = pd.DataFrame({S.MODEL: "model-a", S.SCORE: np.r_[np.ones(40), np.zeros(2)],
                        S.PROPENSITY: np.r_[np.full(40, 0.9), np.full(2, 0.005)]})
    assert shifts(old, new, 4.0, 30) == []
    assert [s.model for s in shifts(old, new, 4.0, 2)] == ["model-a"]  # counted by raw rows it would restart


def _fill(store, n, start, mean):
    rng = np.random.default_rng(start)
    rows = [{"decision_id": f"dec-{i:04d}", "created_at": T0 + timedelta(minutes=i), "request_id": f"r{i}",
             "prompt": f"prompt {i}", "model": "model-a", "propensity": 0.9, "lam": 1.0, "explore": 0.1,
             "router_name": "x", "router_version": "1", "input_tokens": 20.0} for i in range(start, start + n)]
    store.add_decisions(rows)
    for i in range(start, start + n):
        store.add_feedback(f"dec-{i:04d}", float(rng.random() < mean), 0.001, 30)


def test_the_holdout_restarts_when_a_model_changes_and_accumulates_otherwise(tmp_path, logs_dir):  # noqa: F811
    store = DecisionStore(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        _fill(store, 200, 0, 0.9)
        ingest(store, logs_dir, holdout_fraction=0.5, dvc=False, holdout_max_rows=2000, change_z=5.0)
        _fill(store, 200, 200, 0.9)  # the same world: the holdout accumulates
        report = ingest(store, logs_dir, holdout_fraction=0.5, dvc=False, holdout_max_rows=2000, change_z=5.0)
        hold = pd.read_parquet(logs_dir / "holdout.parquet")
        assert not any("changed" in n for n in report.notes) and (hold[S.PROMPT_ID].str.startswith("dec-")).sum() == 200
        _fill(store, 200, 400, 0.1)  # model-a changed: the holdout keeps only the newest slice
        report = ingest(store, logs_dir, holdout_fraction=0.5, dvc=False, holdout_max_rows=2000, change_z=5.0)
        hold = pd.read_parquet(logs_dir / "holdout.parquet")
        train = pd.read_parquet(logs_dir / "train.parquet")
        assert any("the outcomes changed" in n for n in report.notes)
        assert len(hold) == 100 and set(hold[S.PROMPT_ID]) == {f"dec-{i:04d}" for i in range(500, 600)}
        assert {f"dec-{i:04d}" for i in range(0, 500)} <= set(train[S.PROMPT_ID])
    finally:
        store.close()


def test_without_change_z_the_holdout_never_forgets(tmp_path, logs_dir):  # noqa: F811
    store = DecisionStore(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        _fill(store, 200, 0, 0.9)
        ingest(store, logs_dir, holdout_fraction=0.5, dvc=False, holdout_max_rows=2000)
        _fill(store, 200, 200, 0.1)
        ingest(store, logs_dir, holdout_fraction=0.5, dvc=False, holdout_max_rows=2000)
        assert (pd.read_parquet(logs_dir / "holdout.parquet")[S.PROMPT_ID].str.startswith("dec-")).sum() == 200
    finally:
        store.close()
