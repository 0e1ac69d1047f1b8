"""`causal-router validate`, the loaders and the pipeline's validate stage agree on a battery of bad logs."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from causal_router.cli import app
from causal_router.validation.checks import DataValidationError
from causal_router.validation.contract import check_logs
from causal_router.validation.loaders import load_logs
from causal_router.validation.stage import run_data_checks
from tests.validation.bad_inputs import FRAME_CASES, ROW_CASES, N, base, write_case


def cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    # a user's mistake never ends in a traceback: only a clean exit
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def _models_args(models):
    return ["--models", ",".join(models)] if models else []


def _pairs(q: pd.DataFrame) -> list:
    return [(str(p), r) for p, r in zip(q["prompt_id"], q["reason"])]


@pytest.mark.parametrize("case", list(ROW_CASES))
def test_row_faults_agree_between_cli_and_pipeline(case, tmp_path):
    mutate, expected, models = ROW_CASES[case]
    df = mutate(base())
    path = write_case(df, tmp_path / "logs")

    # the CLI refuses the file and names every failed check
    refused = cli("validate", path, "--kind", "logs", *_models_args(models))
    assert refused.exit_code == 1, refused.output
    assert all(name in refused.output for name in expected), refused.output
    named = {p.check for p in check_logs(df, models) if p.severity == "error"}
    assert named == expected
    with pytest.raises(DataValidationError) as info:  # the loaders raise the same checks
        load_logs(path, models)
    assert {p.check for p in info.value.problems if p.severity == "error"} == expected

    # with --quarantine it sets the rows aside and says how many and where
    q_cli = tmp_path / "cli_quarantine.parquet"
    kept = cli("validate", path, "--kind", "logs", *_models_args(models), "--quarantine", q_cli)
    assert kept.exit_code == 0, kept.output
    n_bad = len(pd.read_parquet(q_cli))
    assert f"{n_bad} row(s) quarantined to {q_cli}" in kept.output

    # the pipeline's stage quarantines the same rows for the same reasons
    valid, report = run_data_checks(path, tmp_path / "stage", models=models)
    assert {r["name"] for r in report.failed("error")} == expected
    q_stage = pd.read_parquet(tmp_path / "stage" / "quarantine.parquet")
    assert _pairs(q_stage) == _pairs(pd.read_parquet(q_cli))
    assert all(any(name in r for name in expected) for r in q_stage["reason"])

    # nothing lost, nothing duplicated, every kept row valid, only the spoiled rows set aside
    assert len(valid) + len(q_stage) == N and 1 <= len(q_stage) <= 2
    assert not [p for p in check_logs(valid, models) if p.severity == "error"]
    untouched = base().drop(index=[4, 7])["prompt_id"]
    assert set(untouched) <= set(valid["prompt_id"].astype(str))


@pytest.mark.parametrize("case", list(FRAME_CASES))
def test_frame_faults_agree_between_cli_and_pipeline(case, tmp_path):
    mutate, expected, models = FRAME_CASES[case]
    df = mutate(base())
    path = write_case(df, tmp_path / "logs")
    refused = cli("validate", path, "--kind", "logs", *_models_args(models))
    assert refused.exit_code == 1 and expected in refused.output, refused.output
    # --quarantine cannot fix a frame-level fault: still refused
    assert cli("validate", path, "--kind", "logs", *_models_args(models), "--quarantine",
               tmp_path / "q.parquet").exit_code == 1
    with pytest.raises(DataValidationError) as info:
        run_data_checks(path, tmp_path / "stage", models=models)
    assert expected in {p.check for p in info.value.problems}
    q = pd.read_parquet(tmp_path / "stage" / "quarantine.parquet")
    assert len(q) == len(df) and q["reason"].str.startswith(expected).all()  # no row trusted, none lost
    assert len(pd.read_parquet(tmp_path / "stage" / "valid.parquet")) == 0
