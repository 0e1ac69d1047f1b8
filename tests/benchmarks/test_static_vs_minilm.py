"""The static-versus-MiniLM comparison (:mod:`benchmarks.static_vs_minilm`): merged runs, study means
paired over seeds, loggers kept only where every seed has them."""

import numpy as np
import pandas as pd
import pytest

from benchmarks.static_vs_minilm import merge, report, seed_means, study_means


def _records(offset: float, seeds=(0, 1, 2), loggers=(("uniform", np.nan), ("cost-biased", 3.0))) -> pd.DataFrame:
    rows = []
    for policy, strength in loggers:
        for seed in seeds:
            for method in ("rm-interval", "naive", "oracle"):
                for lam in (0.0, 100.0):
                    rows.append({"dataset": "t", "policy": policy, "requested_strength": strength, "seed": seed,
                                 "method": method, "lambda": lam, "utility": 0.5 + 0.01 * seed + offset * (lam == 0),
                                 "encoder": "static:x", "cpu_model": "cpu"})
    return pd.DataFrame(rows)


def test_merge_keeps_the_later_row_of_a_repeated_cell():
    a, b = _records(0.0), _records(0.1)
    merged = merge([a, b])
    assert len(merged) == len(a)
    assert merged["utility"].max() == pytest.approx(b["utility"].max())


def test_study_mean_pairs_over_seeds_and_averages_loggers_and_lambdas():
    static, minilm = _records(0.004), _records(0.0)
    per = seed_means(static, minilm)
    assert set(per["method"]) == {"rm-interval", "naive"}  # the oracle is no compared method
    row = study_means(per).set_index("method").loc["rm-interval"]
    # +0.004 at one lambda of two, every seed: a mean difference of 0.002, no spread
    assert row["diff"] == pytest.approx(0.002)
    assert row["se"] == pytest.approx(0.0)
    assert row["seeds"] == 3 and row["loggers"] == 2


def test_a_logger_missing_seeds_stays_out_of_the_study_mean():
    static = pd.concat([_records(0.0), _records(0.5, seeds=(0,), loggers=(("previous-router", np.nan),))])
    minilm = pd.concat([_records(0.0), _records(0.0, loggers=(("previous-router", np.nan),))])
    row = study_means(seed_means(static, minilm)).set_index("method").loc["rm-interval"]
    assert row["loggers"] == 2 and row["diff"] == pytest.approx(0.0)
    text = "\n".join(report(static, minilm, "static.csv", {}))
    assert "| t | previous-router | rm-interval | 1 |" in text
    assert "only one table measured" in text


def test_the_study_mean_averages_the_loggers_every_table_has():
    other = _records(0.0).assign(dataset="u")
    static = pd.concat([_records(0.0), _records(0.5, loggers=(("previous-router", np.nan),)), other])
    minilm = pd.concat([_records(0.0), _records(0.0, loggers=(("previous-router", np.nan),)), other])
    rows = study_means(seed_means(static, minilm)).set_index(["dataset", "method"])
    assert rows.loc[("t", "rm-interval"), "loggers"] == 2 and rows.loc[("t", "rm-interval"), "diff"] == pytest.approx(0)


def test_loop_arms_compare_the_last_round_and_the_mean_deployed_utility():
    def loop(shift):
        return pd.DataFrame([{"dataset": "t", "seed": 0, "arm": "causal", "explore": 0.05, "round": r,
                              "deployed_utility": 0.5 + shift, "test_utility": 0.6 + r / 10 + shift}
                             for r in (1, 0)])
    from benchmarks.static_vs_minilm import loop_compare

    rows = loop_compare(loop(0.01), loop(0.0)).set_index("measure")
    assert rows.loc["final test utility", "static"] == pytest.approx(0.71)
    assert rows.loc["mean deployed utility", "diff"] == pytest.approx(0.01)
