import numpy as np
import pandas as pd
import pytest

from causal_router.data import schema as S
from causal_router.data.loaders import (
    SUPPORTED_FORMATS,
    is_routerbench_wide,
    read_frame,
    routerbench_wide_to_long,
    write_frame,
)
from causal_router.data.matrices import FullFeedback
from causal_router.validation.checks import DataValidationError
from causal_router.validation.loaders import load_full_feedback, load_logs, load_table


@pytest.fixture
def log() -> pd.DataFrame:
    # Text that trips naive readers: numeric-looking ids, quotes, commas, newlines, unicode.
    return pd.DataFrame(
        {
            S.PROMPT_ID: ["007", "8", "x-9"],
            S.PROMPT: ['say "hi", then\nleave', "2 + 2 = ?", "café ☕"],
            S.MODEL: ["m-a", "m-b", "m-a"],
            S.SCORE: [1.0, 0.0, 0.5],
            S.COST: [0.001, 0.0, 0.25],
            S.PROPENSITY: [0.5, 1.0, 0.125],
            S.DATASET: ["mmlu", "gsm8k", "mmlu"],
            S.INPUT_TOKENS: [12, 7, 3],
        }
    )


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            S.PROMPT_ID: ["p1", "p1", "p0", "p0"],
            S.PROMPT: ["one", "one", "zero", "zero"],
            S.MODEL: ["m-b", "m-a", "m-a", "m-b"],
            S.SCORE: [1.0, 0.0, 0.5, 1.0],
            S.COST: [0.2, 0.1, 0.1, 0.2],
            S.DATASET: ["arc", "arc", "mbpp", "mbpp"],
        }
    )


@pytest.fixture
def wide() -> pd.DataFrame:
    """RouterBench's original layout: 2 prompts, 2 models, prompts as str of a list."""
    return pd.DataFrame(
        {
            "sample_id": ["arc.1", "mbpp.7"],
            "prompt": ["['Question: ', 'why?']", "['a', \"b's\"]"],
            "eval_name": ["arc-challenge", "mbpp"],
            "gpt-4": [1.0, 0.0],
            "gpt-4|model_response": ["because", "no"],
            "gpt-4|total_cost": [0.03, 0.05],
            "llama|total_cost": [0.001, 0.002],
            "llama": [0.0, 1.0],
            "llama|model_response": ["dunno", "yes"],
            "oracle_model_to_route_to": ["gpt-4", "llama"],
        }
    )


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("suffix", SUPPORTED_FORMATS)
def test_round_trip_every_format(tmp_path, log, suffix):
    path = write_frame(log, tmp_path / f"log{suffix}")
    pd.testing.assert_frame_equal(read_frame(path), log, check_dtype=False)
    loaded = load_logs(path, models=["m-a", "m-b"])
    pd.testing.assert_frame_equal(loaded, log, check_dtype=False)
    assert loaded[S.PROMPT_ID].tolist() == ["007", "8", "x-9"]
    assert loaded[S.SCORE].dtype == np.float64


@pytest.mark.parametrize("suffix", [".csv", ".jsonl.gz", ".parquet"])
def test_written_by_pandas_directly(tmp_path, table, suffix):
    path = tmp_path / f"t{suffix}"
    if suffix == ".parquet":
        table.to_parquet(path)
    elif suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        table.to_json(path, orient="records", lines=True)
    pd.testing.assert_frame_equal(load_table(path), table, check_dtype=False)


def test_unknown_suffix(tmp_path):
    path = tmp_path / "log.xlsx"
    path.write_text("x")
    with pytest.raises(ValueError, match="log.xlsx") as info:
        read_frame(path)
    assert ".parquet" in str(info.value) and ".jsonl.gz" in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        read_frame(tmp_path / "nope.parquet")


# --------------------------------------------------------------------------- RouterBench


def test_routerbench_wide_to_long(wide):
    assert is_routerbench_wide(wide)
    long = routerbench_wide_to_long(wide)
    expected = pd.DataFrame(
        {
            S.PROMPT_ID: ["arc.1", "arc.1", "mbpp.7", "mbpp.7"],
            S.PROMPT: ["Question: why?", "Question: why?", "ab's", "ab's"],
            S.MODEL: ["gpt-4", "llama", "gpt-4", "llama"],
            S.SCORE: [1.0, 0.0, 0.0, 1.0],
            S.COST: [0.03, 0.001, 0.05, 0.002],
            S.DATASET: ["arc-challenge", "arc-challenge", "mbpp", "mbpp"],
        }
    )
    pd.testing.assert_frame_equal(long, expected, check_dtype=False)


def test_routerbench_prompt_variants(wide):
    wide["sample_id"] = [3, 4]  # integer ids become strings
    wide["prompt"] = pd.Series([["x", "y"], "[not a list"], dtype=object)
    long = routerbench_wide_to_long(wide.drop(columns=["eval_name"]))
    assert long[S.PROMPT_ID].tolist() == ["3", "3", "4", "4"]
    assert long[S.PROMPT].tolist() == ["xy", "xy", "[not a list", "[not a list"]
    assert S.DATASET not in long


def test_long_table_is_not_wide(table):
    assert not is_routerbench_wide(table)
    with pytest.raises(ValueError, match="sample_id"):
        routerbench_wide_to_long(table)


def test_load_table_converts_routerbench_pickle(tmp_path, wide):
    wide.to_pickle(tmp_path / "routerbench_0shot.pkl")
    ff = load_full_feedback(tmp_path / "routerbench_0shot.pkl")
    assert isinstance(ff, FullFeedback)
    assert ff.models.tolist() == ["gpt-4", "llama"]
    assert ff.prompt_ids.tolist() == ["arc.1", "mbpp.7"]
    np.testing.assert_allclose(ff.scores, [[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(ff.costs, [[0.03, 0.001], [0.05, 0.002]])
    assert ff.datasets.tolist() == ["arc-challenge", "mbpp"]


def test_load_routerbench_with_nan_score_names_row(tmp_path, wide):
    wide.loc[1, "llama"] = np.nan
    path = write_frame(wide, tmp_path / "rb.parquet")
    with pytest.raises(DataValidationError, match=r"'score'.*\[3\]"):
        load_table(path)


# --------------------------------------------------------------------------- loading and validation


def test_load_full_feedback_long(tmp_path, table):
    ff = load_full_feedback(write_frame(table, tmp_path / "t.parquet"))
    assert ff.prompt_ids.tolist() == ["p1", "p0"]
    assert ff.models.tolist() == ["m-a", "m-b"]
    np.testing.assert_allclose(ff.scores, [[0.0, 1.0], [0.5, 1.0]])


def test_load_logs_rejects_bad_rows(tmp_path, log):
    log.loc[1, S.COST] = -1.0
    path = write_frame(log, tmp_path / "log.csv")
    with pytest.raises(DataValidationError, match=r"'cost'.*\[1\].*-1\.0"):
        load_logs(path)


def test_missing_text_stays_missing(tmp_path, log):
    # A blank model must be reported, not turned into the string "nan".
    log[S.MODEL] = log[S.MODEL].astype(object)
    log.loc[2, S.MODEL] = None
    path = write_frame(log, tmp_path / "log.csv")
    with pytest.raises(DataValidationError) as info:
        load_logs(path)
    assert [(p.check, p.column, p.rows) for p in info.value.problems] == [("not_null:model", S.MODEL, (2,))]


def test_load_logs_unknown_model(tmp_path, log):
    path = write_frame(log, tmp_path / "log.jsonl")
    with pytest.raises(DataValidationError, match="models_present.*'m-c'"):
        load_logs(path, models=["m-a", "m-b", "m-c"])


def test_load_table_incomplete_prompt(tmp_path, table):
    path = write_frame(table.drop(index=2), tmp_path / "t.csv.gz")
    with pytest.raises(DataValidationError, match=r"'p0' lacks \['m-a'\]"):
        load_table(path)


def test_quarantine_file(tmp_path, log):
    log.loc[0, S.SCORE] = 4.0
    log.loc[2, S.PROMPT_ID] = "8"
    path = write_frame(log, tmp_path / "log.parquet")
    # one row of one model is left: fine for a batch, not for training (several_models)
    with pytest.raises(DataValidationError, match="several_models"):
        load_logs(path, quarantine=tmp_path / "q" / "bad.csv")
    valid = load_logs(path, quarantine=tmp_path / "q" / "bad.csv", for_training=False)
    bad = read_frame(tmp_path / "q" / "bad.csv")
    assert len(valid) + len(bad) == len(log)
    assert valid[S.PROMPT_ID].tolist() == ["8"]
    assert bad[[S.PROMPT_ID, "reason"]].to_numpy().tolist() == [
        ["007", "score_range"],
        ["8", "unique_prompt_id"],
    ]


def test_quarantine_table_keeps_complete_prompts(tmp_path, table):
    table.loc[3, S.COST] = np.nan
    path = write_frame(table, tmp_path / "t.parquet")
    valid = load_table(path, quarantine=tmp_path / "bad.parquet")
    assert set(valid[S.PROMPT_ID]) == {"p1"}
    assert len(read_frame(tmp_path / "bad.parquet")) == 2
