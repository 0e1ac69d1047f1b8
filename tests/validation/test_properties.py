"""Property-based: generated logs mixing valid and invalid rows (issue 11).

Validation never raises anything but the project's own error; kept + quarantined rows are the
input (nothing lost, nothing duplicated); the kept rows pass every check.
"""

import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from causal_router.validation.checks import DataValidationError
from causal_router.validation.contract import check_logs, split_logs

MODELS = ["m-a", "m-b", "m-c"]

_weird = st.one_of(st.none(), st.just(math.nan), st.just(math.inf), st.just(-math.inf), st.text(max_size=5),
                   st.integers(-10**20, 10**20), st.booleans(), st.lists(st.integers(), max_size=2))
_number = st.one_of(st.floats(-2, 2), st.floats(allow_nan=True, allow_infinity=True), _weird)
COLUMNS = ["prompt_id", "prompt", "model", "score", "cost", "propensity", "input_tokens"]
_row = st.fixed_dictionaries({
    "prompt_id": st.one_of(st.sampled_from([f"p{i}" for i in range(8)]), st.integers(0, 5), st.none()),
    "prompt": st.one_of(st.text(max_size=20), _weird),
    "model": st.one_of(st.sampled_from(MODELS + ["m-x"]), st.none(), st.integers(0, 2)),
    "score": st.one_of(st.floats(0, 1), _number),
    "cost": st.one_of(st.floats(0, 1), _number),
    "propensity": st.one_of(st.floats(0.01, 1), _number),
    "input_tokens": st.one_of(st.integers(0, 1000), _number),
})


@st.composite
def logs(draw):
    rows = draw(st.lists(_row, min_size=0, max_size=25))
    df = pd.DataFrame(rows, columns=COLUMNS)
    if draw(st.booleans()):
        df = df.drop(columns=draw(st.sampled_from(["propensity", "input_tokens"])))
    if len(df) and draw(st.booleans()):
        df.index = np.arange(100, 100 + len(df))[::-1]  # any index: rows are reported by position
    return df


def _key(df):
    return sorted(map(int, df.index))


@settings(max_examples=150, deadline=None)
@given(df=logs(), models=st.sampled_from([None, MODELS]), for_training=st.booleans())
def test_split_loses_nothing_and_keeps_only_valid_rows(df, models, for_training):
    try:
        kept, quarantined = split_logs(df, models, require_all=False, for_training=for_training)
    except DataValidationError as err:  # frame-level only: no quarantine could fix it
        assert err.problems and all(not p.rows for p in err.problems if p.severity == "error" and p.check in
                                    {"columns_exist", "has_rows", "several_models", "models_present"})
        return
    assert len(kept) + len(quarantined) == len(df)
    assert _key(pd.concat([kept.iloc[:, :0], quarantined.iloc[:, :0]])) == sorted(map(int, df.index))
    assert quarantined["reason"].map(lambda r: isinstance(r, str) and r != "").all()
    errors = [p for p in check_logs(kept, models, require_all=False, for_training=for_training)
              if p.severity == "error"]
    assert errors == []


@settings(max_examples=100, deadline=None)
@given(df=logs())
def test_checks_never_raise_anything_but_our_error(df):
    problems = check_logs(df, MODELS)  # reports, never raises
    for p in problems:
        assert all(0 <= r < len(df) for r in p.rows) and p.message.startswith(p.check)
