import numpy as np
import pandas as pd
import pytest

from causal_router.data import schema as S
from causal_router.validation.checks import DataValidationError, Problem
from causal_router.validation.contract import (
    check_logs,
    check_table,
    split_valid,
    validate_logs,
    validate_table,
)

MODELS = ["m-a", "m-b", "m-c"]


@pytest.fixture
def log() -> pd.DataFrame:
    return pd.DataFrame(
        {
            S.PROMPT_ID: [f"p{i}" for i in range(6)],
            S.PROMPT: [f"question {i}" for i in range(6)],
            S.MODEL: ["m-a", "m-b", "m-c", "m-a", "m-b", "m-c"],
            S.SCORE: [1.0, 0.0, 0.5, 1.0, 0.25, 0.0],
            S.COST: [0.01, 0.002, 0.0, 0.02, 0.001, 0.003],
            S.PROPENSITY: [0.5, 0.25, 0.25, 1.0, 0.3, 0.2],
            S.INPUT_TOKENS: [10, 20, 30, 40, 50, 60],
        }
    )


@pytest.fixture
def table() -> pd.DataFrame:
    ids = np.repeat(["q0", "q1", "q2"], 2)
    return pd.DataFrame(
        {
            S.PROMPT_ID: ids,
            S.PROMPT: [f"text of {i}" for i in ids],
            S.MODEL: ["m-a", "m-b"] * 3,
            S.SCORE: [1.0, 0.0, 0.0, 1.0, 0.5, 0.5],
            S.COST: [0.1, 0.01, 0.1, 0.01, 0.1, 0.01],
            S.PROPENSITY: [0.7, 0.3, 0.5, 0.5, 0.0, 1.0],
        }
    )


def only(problems: list[Problem], check: str) -> Problem:
    found = [p for p in problems if p.check == check]
    assert len(found) == 1, problems
    return found[0]


def raises(fn, *args, **kwargs) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        fn(*args, **kwargs)
    return info.value


# --------------------------------------------------------------------------- valid input


def test_valid_inputs_pass_unchanged(log, table):
    assert check_logs(log, MODELS) == []
    assert check_logs(log, MODELS, positivity_floor=0.9, warn=()) != []
    assert check_table(table) == []
    assert validate_logs(log, MODELS) is log
    assert validate_table(table) is table


# --------------------------------------------------------------------------- bad input, one per case


def test_missing_column_reported_alone(log):
    err = raises(validate_logs, log.drop(columns=[S.SCORE, S.COST]))
    assert [p.check for p in err.problems] == ["columns_exist"]
    assert err.problems[0].rows == ()
    assert "'score'" in str(err) and "'cost'" in str(err)
    assert str(err).startswith("observational log failed validation: 1 problem(s)")


def test_missing_column_table(table):
    err = raises(validate_table, table.drop(columns=[S.MODEL]))
    assert str(err).startswith("full-feedback table failed validation")
    assert "'model'" in str(err)


def test_nan_score_names_column_and_row(log):
    log.loc[2, S.SCORE] = np.nan
    err = raises(validate_logs, log)
    p = only(err.problems, "not_null:score")
    assert (p.column, p.rows) == (S.SCORE, (2,))
    assert "'score'" in p.message and "[2]" in p.message


def test_none_in_text_column(log):
    log[S.MODEL] = log[S.MODEL].astype(object)
    log.loc[4, S.MODEL] = None
    p = only(check_logs(log), "not_null:model")
    assert (p.column, p.rows) == (S.MODEL, (4,))


def test_score_out_of_range(log):
    log.loc[1, S.SCORE] = 1.5
    log.loc[4, S.SCORE] = -0.1
    p = only(check_logs(log), "score_range")
    assert p.rows == (1, 4)
    assert "'score'" in p.message and "[1, 4]" in p.message and "1.5" in p.message and "-0.1" in p.message


def test_non_numeric_score(log):
    log[S.SCORE] = log[S.SCORE].astype(object)
    log.loc[3, S.SCORE] = "high"
    p = only(check_logs(log), "numeric:score")
    assert (p.column, p.rows) == (S.SCORE, (3,))
    assert "'high'" in p.message


def test_negative_cost(log):
    log.loc[5, S.COST] = -0.5
    p = only(raises(validate_logs, log).problems, "cost_nonnegative")
    assert (p.column, p.rows) == (S.COST, (5,))
    assert "'cost'" in p.message and "[5]" in p.message and "-0.5" in p.message


def test_infinite_cost(log):
    log.loc[0, S.COST] = np.inf
    assert only(check_logs(log), "cost_finite").rows == (0,)


@pytest.mark.parametrize("value", [0.0, 1.5, -0.2])
def test_propensity_out_of_range(log, value):
    log.loc[3, S.PROPENSITY] = value
    p = only(raises(validate_logs, log).problems, "propensity_range")
    assert (p.column, p.rows) == (S.PROPENSITY, (3,))
    assert "'propensity'" in p.message and "[3]" in p.message and str(value) in p.message


def test_propensity_nan(log):
    log.loc[1, S.PROPENSITY] = np.nan
    p = only(check_logs(log), "not_null:propensity")
    assert (p.column, p.rows) == (S.PROPENSITY, (1,))


def test_negative_tokens(log):
    log[S.INPUT_TOKENS] = log[S.INPUT_TOKENS].astype(float)
    log.loc[2, S.INPUT_TOKENS] = -3
    log.loc[3, S.INPUT_TOKENS] = np.nan  # filled elsewhere: training would refuse it
    p = only(check_logs(log), "input_tokens_range")
    assert (p.column, p.rows) == (S.INPUT_TOKENS, (2,))
    assert only(check_logs(log), "not_null:input_tokens").rows == (3,)
    log[S.INPUT_TOKENS] = np.nan  # an empty optional column is as good as absent
    assert check_logs(log) == []


def test_duplicate_prompt_id_lists_all_rows(log):
    log.loc[4, S.PROMPT_ID] = "p1"
    p = only(raises(validate_logs, log).problems, "unique_prompt_id")
    assert (p.column, p.rows) == (S.PROMPT_ID, (1, 4))
    assert "'p1'" in p.message and "[1, 4]" in p.message


def test_model_without_rows(log):
    err = raises(validate_logs, log, models=MODELS + ["m-d"])
    p = only(err.problems, "models_present")
    assert p.rows == () and p.column == S.MODEL
    assert "'m-d'" in p.message


def test_unknown_model(log):
    p = only(check_logs(log, models=["m-a", "m-b"]), "model_in_set")
    assert p.rows == (2, 5)
    assert "'m-c'" in p.message and "[2, 5]" in p.message


def test_table_prompt_lacking_model(table):
    table = table.drop(index=3)  # q1 loses m-b
    err = raises(validate_table, table)
    p = only(err.problems, "complete_prompt")
    assert p.rows == (2,)  # positional: the remaining row of q1
    assert "'q1'" in p.message and "'m-b'" in p.message


def test_table_duplicate_pair(table):
    table = pd.concat([table, table.iloc[[4]]], ignore_index=True)
    p = only(check_table(table), "unique_pair")
    assert p.rows == (4, 6)
    assert "q2" in p.message and "m-a" in p.message


def test_table_propensity_must_sum_to_one(table):
    table.loc[0, S.PROPENSITY] = 0.6
    p = only(raises(validate_table, table).problems, "propensity_sum")
    assert p.rows == (0, 1)
    assert "'q0'" in p.message


def test_table_propensity_range(table):
    table.loc[0, S.PROPENSITY] = 1.5
    table.loc[1, S.PROPENSITY] = -0.5
    assert only(check_table(table), "propensity_range").rows == (0, 1)


def test_rows_are_positional_not_labels(log):
    log.index = [10, 20, 30, 40, 50, 60]
    log.loc[30, S.SCORE] = 7.0
    assert only(check_logs(log), "score_range").rows == (2,)


def test_error_lists_every_problem(log):
    log.loc[0, S.SCORE] = 2.0
    log.loc[1, S.COST] = -1.0
    err = raises(validate_logs, log)
    lines = str(err).splitlines()
    assert lines[0] == "observational log failed validation: 2 problem(s)"
    assert len(lines) == 3 and all(line.startswith("  - ") for line in lines[1:])
    assert isinstance(err, ValueError)


def test_message_quotes_at_most_five_rows(log):
    log[S.SCORE] = 3.0
    p = only(check_logs(log), "score_range")
    assert p.rows == (0, 1, 2, 3, 4, 5)
    assert "6 row(s)" in p.message and "first rows [0, 1, 2, 3, 4] " in p.message


# --------------------------------------------------------------------------- split_valid


def test_split_valid_logs_loses_nothing_and_gives_reasons(log):
    log.loc[1, S.SCORE] = 1.5
    log.loc[1, S.COST] = np.nan
    log.loc[3, S.PROMPT_ID] = "p0"  # duplicate of row 0: first occurrence kept
    log.loc[5, S.PROPENSITY] = 0.0
    valid, bad = split_valid(log, "logs", MODELS)
    assert len(valid) + len(bad) == len(log)
    assert sorted(valid.index.tolist() + bad.index.tolist()) == log.index.tolist()
    assert valid.index.tolist() == [0, 2, 4]
    assert list(valid.columns) == list(log.columns)
    assert bad["reason"].to_dict() == {
        1: "not_null:cost; score_range",
        3: "unique_prompt_id",
        5: "propensity_range",
    }
    assert check_logs(valid) == []


def test_split_valid_keeps_the_valid_copy_of_a_duplicate(log):
    log.loc[3, S.PROMPT_ID] = "p0"
    log.loc[0, S.SCORE] = np.nan
    valid, bad = split_valid(log)
    assert 3 in valid.index
    assert bad.loc[0, "reason"] == "not_null:score; unique_prompt_id"


def test_split_valid_all_good(log):
    valid, bad = split_valid(log)
    pd.testing.assert_frame_equal(valid, log)
    assert bad.empty and "reason" in bad.columns


def test_split_valid_table_quarantines_whole_prompts(table):
    table = table.drop(index=3).reset_index(drop=True)  # q1 incomplete
    table.loc[0, S.SCORE] = 9.0  # q0 loses a cell
    table.loc[3, S.PROPENSITY] = 0.5  # q2 sums to 1.5
    valid, bad = split_valid(table, "table")
    assert len(valid) + len(bad) == len(table)
    assert bad.loc[0, "reason"] == "score_range"
    assert bad.loc[1, "reason"] == "complete_prompt"
    assert bad.loc[2, "reason"] == "propensity_sum; complete_prompt"
    assert bad.loc[3, "reason"] == "propensity_sum"
    assert valid.empty


def test_split_valid_table_drops_surplus_duplicates_only(table):
    table = pd.concat([table, table.iloc[[2]]], ignore_index=True)
    valid, bad = split_valid(table, "table")
    assert bad.index.tolist() == [6] and bad.loc[6, "reason"] == "unique_pair"
    validate_table(valid)


@pytest.mark.parametrize("kind", ["logs", "table"])
def test_split_valid_raises_on_frame_level_problems(log, table, kind):
    df = (log if kind == "logs" else table).drop(columns=[S.COST])
    err = raises(split_valid, df, kind)
    assert [p.check for p in err.problems] == ["columns_exist"]


def test_split_valid_raises_on_model_without_rows(log):
    err = raises(split_valid, log, "logs", MODELS + ["m-z"])
    assert "'m-z'" in str(err)


def test_split_valid_rejects_unknown_kind(log):
    with pytest.raises(ValueError, match="kind"):
        split_valid(log, "wide")


def test_100k_rows():
    rng = np.random.default_rng(0)
    n = 100_000
    log = pd.DataFrame(
        {
            S.PROMPT_ID: np.char.add("p", np.arange(n).astype(str)),
            S.PROMPT: "some prompt text",
            S.MODEL: rng.choice(MODELS, n),
            S.SCORE: rng.uniform(-0.01, 1, n),
            S.COST: rng.uniform(-0.001, 1, n),
            S.PROPENSITY: rng.uniform(0, 1, n),
        }
    )
    log.loc[::1000, S.PROMPT_ID] = "dup"
    # correctness at scale only: speed belongs in benchmarks, not in a timed test on a shared CPU
    problems = check_logs(log, MODELS)
    valid, bad = split_valid(log, "logs", MODELS)
    assert {p.check for p in problems if p.severity == "error"} == {"score_range", "cost_nonnegative",
                                                                    "unique_prompt_id"}
    assert len(valid) + len(bad) == n and [p for p in check_logs(valid) if p.severity == "error"] == []


def test_propensities_vectors_must_agree_with_the_logged_propensity(log):
    """The served probability vector (JSON) is checked where present: a vector that does not parse,
    does not sum to 1 or gives the logged model another probability is a bad row; a row without one
    (logs from before the vector was recorded) is fine."""
    vectors = [[0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [1, 0, 0], [0.5, 0.3, 0.2], [0.4, 0.4, 0.2]]
    log[S.PROPENSITIES] = [S.propensities_json(MODELS, v) for v in vectors]
    assert not check_logs(log)
    log.loc[1, S.PROPENSITIES] = None
    log.loc[2, S.PROPENSITIES] = "{not json"
    log.loc[4, S.PROPENSITIES] = S.propensities_json(MODELS, [0.4, 0.3, 0.2])  # sums to 0.9
    log.loc[5, S.PROPENSITIES] = S.propensities_json(MODELS, [0.4, 0.3, 0.3])  # m-c: 0.3, logged 0.2
    p = only(raises(validate_logs, log).problems, "propensities_vector")
    assert (p.column, p.rows) == (S.PROPENSITIES, (2, 4, 5))
