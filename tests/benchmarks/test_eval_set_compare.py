"""benchmarks/eval_set_compare.py: study means per encoder and their difference paired by seed."""

import numpy as np
import pandas as pd
import pytest

from benchmarks.eval_set_compare import compare


def _rows(shift):
    out = []
    for seed, base in enumerate([0.5, 0.6, 0.7]):
        for policy in ("a", "b"):
            for lam in (0.0, 1.0):
                out.append({"dataset": "t", "policy": policy, "seed": seed, "eval_prompts": 50, "method": "naive",
                            "lambda": lam, "utility": base + shift(seed)})
    return pd.DataFrame(out)


def test_the_difference_is_paired_over_seeds():
    minilm, static = _rows(lambda s: 0.0), _rows(lambda s: [0.01, 0.02, 0.03][s])
    (row,) = compare(minilm, static).itertuples()
    assert row.utility_minilm == pytest.approx(0.6) and row.diff == pytest.approx(0.02) and row.seeds == 3
    assert row.paired_se == pytest.approx(np.std([0.01, 0.02, 0.03], ddof=1) / np.sqrt(3))
    # a seed the static run lacks is left out of both means
    (row,) = compare(minilm, static[static.seed < 2]).itertuples()
    assert row.seeds == 2 and row.utility_minilm == pytest.approx(0.55)
