"""tokens_per_char: a log-derived estimate robust to outlying prompts (issue 11, item 3)."""

import numpy as np
import pandas as pd

from causal_router.data.schema import tokens_per_char


def _logs(n=200, seed=0):
    rng = np.random.default_rng(seed)
    chars = rng.integers(40, 400, n)
    prompts = ["x" * int(c) for c in chars]
    tokens = np.round(chars * rng.uniform(0.22, 0.28, n))  # about 4 characters a token
    return pd.DataFrame({"prompt": prompts, "input_tokens": tokens})


def test_estimate_is_the_typical_ratio():
    assert abs(tokens_per_char(_logs()) - 0.25) < 0.01


def test_one_huge_prompt_does_not_move_it():
    logs = _logs()
    before = tokens_per_char(logs)
    # one 1 MB prompt whose token count was truncated at a context limit: ratio 0.008
    huge = pd.DataFrame({"prompt": ["y" * 1_000_000], "input_tokens": [8192]})
    after = tokens_per_char(pd.concat([logs, huge], ignore_index=True))
    assert abs(after - before) / before < 0.01
    # the old ratio of sums would have moved about sixfold
    both = pd.concat([logs, huge], ignore_index=True)
    ratio_of_sums = both["input_tokens"].sum() / both["prompt"].str.len().sum()
    assert before / ratio_of_sums > 3


def test_no_usable_rows_gives_none():
    assert tokens_per_char(pd.DataFrame({"prompt": ["a"]})) is None
    assert tokens_per_char(pd.DataFrame({"prompt": [""], "input_tokens": [3.0]})) is None
    assert tokens_per_char(pd.DataFrame({"prompt": ["ab", "cd"], "input_tokens": [np.nan, 1.0]})) == 0.5


def test_propensity_vectors_round_trip_in_any_model_order():
    from causal_router.data import schema as S

    models = ["a", "b", "c"]
    logs = pd.DataFrame({S.PROPENSITIES: [S.propensities_json(models, [0.7, 0.3, 0.0]), None,
                                          '{"c": 0.5, "a": 0.25, "z": 0.25}']})
    m = S.propensity_matrix(logs, ["c", "b", "a"])
    np.testing.assert_array_equal(m[0], [0.0, 0.3, 0.7])  # a model left out had probability 0
    assert np.isnan(m[1]).all()  # a row without a vector: unknown, not zero
    np.testing.assert_array_equal(m[2], [0.5, 0.0, 0.25])  # a model outside the list is ignored
    assert S.propensity_matrix(logs.iloc[[1]], models) is None
    assert S.propensity_matrix(pd.DataFrame({"x": [1]}), models) is None
