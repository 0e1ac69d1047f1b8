import math

import numpy as np
import pandas as pd
import pytest

from causal_router.validation.overlap import OVERLAP_COLUMNS, effective_sample_size, overlap_report


def _logs(with_propensity=True):
    df = pd.DataFrame(
        {
            "prompt_id": ["p0", "p1", "p2"],
            "model": ["a", "a", "b"],
            "propensity": [0.5, 0.25, 0.2],
        }
    )
    return df if with_propensity else df.drop(columns="propensity")


def test_hand_checked_numbers():
    out = overlap_report(_logs(), models=["a", "b", "c"], floor=0.3).set_index("model")
    assert list(out.reset_index().columns) == list(OVERLAP_COLUMNS)
    assert list(out.index) == ["a", "b", "c"]
    a, b, c = out.loc["a"], out.loc["b"], out.loc["c"]
    # a: weights 2 and 4 -> ESS (2 + 4)^2 / (4 + 16) = 1.8
    assert a.n_logged == 2 and a.share == pytest.approx(2 / 3)
    assert a.min_propensity == 0.25 and a.median_propensity == pytest.approx(0.375)
    assert a.fraction_below_floor == 0.5 and a.ess == pytest.approx(1.8)
    assert b.n_logged == 1 and b.share == pytest.approx(1 / 3)
    assert b.fraction_below_floor == 1.0 and b.ess == pytest.approx(1.0)
    # a configured model never logged
    assert c.n_logged == 0 and c.share == 0.0 and c.ess == 0.0
    assert math.isnan(c.min_propensity) and math.isnan(c.median_propensity) and math.isnan(c.fraction_below_floor)


def test_without_propensity_column_stats_are_nan():
    out = overlap_report(_logs(with_propensity=False), models=["a", "b"])
    assert out["n_logged"].tolist() == [2, 1]
    assert out[["min_propensity", "median_propensity", "fraction_below_floor", "ess"]].isna().all().all()


def test_default_models_and_unknown_models_appended():
    out = overlap_report(_logs())
    assert out["model"].tolist() == ["a", "b"]
    out = overlap_report(_logs(), models=["b"])
    assert out["model"].tolist() == ["b", "a"]
    assert out["share"].sum() == pytest.approx(1.0)


def test_unusable_propensities_are_left_out():
    df = _logs()
    df.loc[1, "propensity"] = np.nan
    out = overlap_report(df).set_index("model")
    assert out.loc["a", "n_logged"] == 2 and out.loc["a", "ess"] == pytest.approx(1.0)
    assert out.loc["a", "min_propensity"] == 0.5


def test_ess_helper_and_missing_model_column():
    assert effective_sample_size([1, 1, 1, 1]) == pytest.approx(4.0)
    assert effective_sample_size([]) == 0.0
    with pytest.raises(ValueError, match="model"):
        overlap_report(pd.DataFrame({"x": [1]}))
