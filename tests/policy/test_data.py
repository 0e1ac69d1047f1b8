"""What routers learn from (policy/data.py): an evaluation set as rows for the outcome models."""

import numpy as np
import pandas as pd
import pytest

from causal_router.data.matrices import FullFeedback
from causal_router.policy.data import scored_rows


def _table():
    rows = []
    for i in range(4):
        for j, model in enumerate(["b-model", "a-model", "c-model"]):
            rows.append({"prompt_id": f"p{i}", "prompt": f"prompt {i}", "model": model, "score": (i + j) % 2,
                         "cost": 0.001 * (j + 1) * (i + 1), "input_tokens": 10.0 * (i + 1),
                         "output_tokens": 100.0 * j + i})
    return FullFeedback.from_frame(pd.DataFrame(rows))


def test_scored_rows_number_arms_as_the_routers_do():
    ff = _table()
    X = np.arange(8.0).reshape(4, 2)
    models = ["c-model", "a-model", "b-model", "d-model"]  # the routers' order, with a model the set lacks
    rows = scored_rows(ff, X, models)
    assert len(rows) == 12
    for x, t, q, c, tin, tout in zip(rows.X, rows.treatment, rows.quality, rows.cost, rows.input_tokens,
                                     rows.output_tokens):
        i, model = int(x[0] // 2), models[t]
        j = list(ff.models).index(model)
        assert model != "d-model"
        np.testing.assert_array_equal(x, X[i])
        assert (q, c, tin, tout) == (ff.scores[i, j], ff.costs[i, j], ff.input_tokens[i], ff.output_tokens[i, j])


def test_unscored_cells_are_skipped_and_unknown_models_named():
    ff = _table()
    scores = ff.scores.copy()
    scores[1, 2] = np.nan
    ff = FullFeedback(**{**ff.__dict__, "scores": scores})
    assert len(scored_rows(ff, np.zeros((4, 2)), list(ff.models))) == 11
    with pytest.raises(ValueError, match="c-model"):
        scored_rows(ff, np.zeros((4, 2)), ["a-model", "b-model"])
    with pytest.raises(ValueError, match=r"n_prompts = 4"):
        scored_rows(ff, np.zeros((3, 2)), list(ff.models))


def test_subset_keeps_rows_aligned():
    ff = _table()
    sub = ff.subset([2, 0])
    assert list(sub.prompt_ids) == ["p2", "p0"] and list(sub.models) == list(ff.models)
    np.testing.assert_array_equal(sub.scores, ff.scores[[2, 0]])
    np.testing.assert_array_equal(sub.output_tokens, ff.output_tokens[[2, 0]])
    np.testing.assert_array_equal(sub.input_tokens, ff.input_tokens[[2, 0]])
