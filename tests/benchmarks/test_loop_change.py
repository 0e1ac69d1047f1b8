"""The change study's metrics (benchmarks/loop_change.py): regret after the change and rounds to adapt."""

import numpy as np
import pandas as pd

from benchmarks.loop_change import metrics


def _frame(scenario, shares):
    rows = []
    for arm, share in shares.items():
        for r, s in enumerate(share):
            rows.append({"dataset": "d", "seed": 0, "scenario": scenario, "arm": arm, "round": r,
                         "deployed_utility": 0.5, "cumulative_regret": 10.0 * (r + 1), "changed_model_share": s})
    return pd.DataFrame(rows)


def test_rounds_to_adapt_compare_with_the_skylines_share():
    df = metrics(_frame("new-model", {"skyline": [0, 0, 0, 0.5, 0.5, 0.5], "causal": [0, 0, 0, 0.05, 0.41, 0.5],
                                      "greedy": [0, 0, 0, 0, 0, 0]}), 3)
    got = df.groupby("arm")["rounds_to_adapt"].first()
    assert got["causal"] == 2 and got["skyline"] == 1 and pd.isna(got["greedy"])
    after = df[df["arm"] == "causal"].set_index("round")["cumulative_regret_after_change"]
    assert np.isnan(after[2]) and after[3] == 10.0 and after[5] == 30.0
    deg = metrics(_frame("degrade", {"skyline": [0.6, 0.6, 0.6, 0.0, 0.0, 0.0], "causal": [0.6] * 4 + [0.15, 0.1]}), 3)
    assert deg.groupby("arm")["rounds_to_adapt"].first()["causal"] == 2
    none = metrics(_frame("none", {"skyline": [None] * 6, "causal": [None] * 6}), 3)
    assert none["rounds_to_adapt"].isna().all()
