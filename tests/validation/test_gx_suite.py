import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from causal_router.data.loaders import write_frame
from causal_router.validation.catalogue import log_checks
from causal_router.validation.checks import DataValidationError, LogContract
from causal_router.validation.contract import split_logs
from causal_router.validation.gx_suite import build_log_suite, validate_logs_gx
from causal_router.validation.report import DataQualityReport
from causal_router.validation.stage import run_data_checks


def quarantine_split(df, report):
    """The quarantine the report's configuration gives (the report itself decides nothing)."""
    cfg = report.config
    return split_logs(df, cfg["models"], positivity_floor=cfg["positivity_floor"], warn=cfg["warn"],
                      require_all=cfg["require_all"])

MODELS = ["a", "b", "c"]


@pytest.fixture(scope="module", autouse=True)
def _warm_context():
    """Build the (process-wide, cached) GX context once for the module."""
    validate_logs_gx(_clean(), models=MODELS)


def _clean(n=6):
    # A non-default index: rows are reported by position, not by label.
    return pd.DataFrame(
        {
            "prompt_id": [f"p{i}" for i in range(n)],
            "prompt": [f"question {i}" for i in range(n)],
            "model": [MODELS[i % 3] for i in range(n)],
            "score": np.linspace(0.0, 1.0, n),
            "cost": np.linspace(0.0, 0.01, n),
            "propensity": [0.5, 0.25, 1.0, 0.4, 0.3, 0.2][:n],
            "dataset": "mmlu",
        },
        index=np.arange(100, 100 + n),
    )


def _names(report, severity="error"):
    return {r["name"] for r in report.failed(severity)}


def test_module_import_is_light():
    code = "import sys, causal_router.validation.gx_suite; assert 'great_expectations' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_build_log_suite_names():
    suite = build_log_suite(MODELS, 0.01)
    names = [e.meta["name"] for e in suite.expectations]
    for name in ("columns_exist", "not_null:score", "score_range", "cost_nonnegative", "cost_finite",
                 "propensity_range", "input_tokens_range", "unique_prompt_id", "model_in_set", "has_rows",
                 "several_models", "models_present", "positivity_floor"):
        assert name in names
    # every expectation is a catalogue check, under the catalogue's name
    catalogue = {c.name for c in log_checks(["propensity", "input_tokens", "output_tokens"],
                                            LogContract.make(MODELS, positivity_floor=0.01))}
    assert set(names) <= catalogue
    floor = next(e for e in suite.expectations if e.meta["name"] == "positivity_floor")
    assert floor.min_value == 0.01 and str(floor.severity.value) == "warning"
    no_models = [e.meta["name"] for e in build_log_suite(None, 0.01).expectations]
    assert "model_in_set" not in no_models and "models_present" not in no_models


def test_clean_frame_passes():
    report = validate_logs_gx(_clean(), models=MODELS)
    assert isinstance(report, DataQualityReport)
    assert report.success and report.failed() == [] and report.n_rows == 6
    assert all(r["success"] and r["rows"] == [] for r in report.results)
    assert "all" in report.summary() and "passed" in report.summary()
    valid, quarantine = quarantine_split(_clean(), report)
    assert len(valid) == 6 and len(quarantine) == 0 and "reason" in quarantine.columns
    assert all(r["gx"] is None or r["gx"]["success"] for r in report.results)  # GX agrees
    json.dumps(report.to_dict(), allow_nan=False)


def _set(col, row, value):
    def f(df):
        df.iloc[row, df.columns.get_loc(col)] = value
        return df
    return f


BAD_CASES = {
    "score 1.5": (_set("score", 2, 1.5), "score_range", "score", [2], [1.5]),
    "negative cost": (_set("cost", 1, -0.5), "cost_nonnegative", "cost", [1], [-0.5]),
    "propensity 0": (_set("propensity", 3, 0.0), "propensity_range", "propensity", [3], [0.0]),
    "propensity above 1": (_set("propensity", 0, 1.5), "propensity_range", "propensity", [0], [1.5]),
    "duplicate prompt_id": (_set("prompt_id", 4, "p0"), "unique_prompt_id", "prompt_id", [0, 4], ["p0"]),
    "unknown model": (_set("model", 5, "gpt-x"), "model_in_set", "model", [5], ["gpt-x"]),
    "null score": (_set("score", 1, np.nan), "not_null:score", "score", [1], []),
    "infinite cost": (_set("cost", 2, np.inf), "cost_finite", "cost", [2], [np.inf]),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_rows_fail_the_named_expectation(case):
    mutate, name, column, rows, examples = BAD_CASES[case]
    df = mutate(_clean())
    report = validate_logs_gx(df, models=MODELS)
    assert not report.success
    assert _names(report) == {name}
    r = report.result(name)
    assert r["column"] == column and r["rows"] == rows and r["unexpected_count"] == len(rows)
    assert r["unexpected_examples"] == examples and r["severity"] == "error"
    line = next(line for line in report.summary().splitlines() if name in line)
    assert repr(column) in line and f"{len(rows)} row(s)" in line
    assert r["gx"]["success"] is False  # the GX expectation of the same name fails too


def test_missing_configured_model_is_frame_level():
    report = validate_logs_gx(_clean(), models=MODELS + ["d", "e"])
    assert _names(report) == {"models_present"}
    r = report.result("models_present")
    assert r["unexpected_examples"] == ["d", "e"] and r["unexpected_count"] == 2 and r["rows"] == []
    with pytest.raises(DataValidationError, match="models_present"):  # frame-level: no quarantine fixes it
        quarantine_split(_clean(), report)
    # models from a price sheet: a model without rows is only a warning
    sheet = validate_logs_gx(_clean(), models=MODELS + ["d"], require_all=False)
    assert sheet.success and _names(sheet, "warning") == {"models_present"}


def test_missing_column():
    report = validate_logs_gx(_clean().drop(columns=["cost"]), models=MODELS)
    assert _names(report) == {"columns_exist"}
    r = report.result("columns_exist")
    assert r["column"] == "cost" and r["unexpected_examples"] == ["cost"]
    ran = {x["name"] for x in report.results}
    assert "cost_nonnegative" not in ran and "not_null:cost" not in ran
    assert "absent" in report.summary() and "cost" in report.summary()


def test_propensity_is_optional():
    report = validate_logs_gx(_clean().drop(columns=["propensity"]), models=MODELS)
    assert report.success
    assert not {"propensity_range", "positivity_floor"} & {x["name"] for x in report.results}


def test_positivity_floor_is_a_warning_by_default():
    df = _set("propensity", 1, 0.0005)(_clean())
    report = validate_logs_gx(df, models=MODELS, positivity_floor=1e-3)
    assert report.success
    assert _names(report, "warning") == {"positivity_floor"} and _names(report) == set()
    assert report.result("positivity_floor")["rows"] == [1]
    assert "warning" in report.summary()
    valid, quarantine = quarantine_split(df, report)
    assert len(valid) == 6 and len(quarantine) == 0

    strict = validate_logs_gx(df, models=MODELS, positivity_floor=1e-3, warn=())
    assert not strict.success and _names(strict) == {"positivity_floor"}
    valid, quarantine = quarantine_split(df, strict)
    assert quarantine.index.tolist() == [101] and quarantine["reason"].tolist() == ["positivity_floor"]


def test_text_in_a_numeric_column_is_named_and_gx_error_recorded():
    df = _clean()
    df["score"] = pd.Series([0.1, "high", 0.5, 2, 0.3, 0.9], index=df.index, dtype=object)
    report = validate_logs_gx(df, models=MODELS)
    assert report.result("numeric:score")["rows"] == [1]
    r = report.result("score_range")
    assert not r["success"] and r["rows"] == [3] and r["unexpected_examples"] == [2]
    assert _names(report) == {"numeric:score", "score_range"}
    assert r["gx"]["exception"]  # GX cannot range-check a column holding text: recorded, not fatal
    valid, quarantine = quarantine_split(df, report)
    assert quarantine.index.tolist() == [101, 103]


def test_quarantine_loses_nothing_and_names_reasons():
    df = _clean()
    df.iloc[1, df.columns.get_loc("score")] = 1.5
    df.iloc[1, df.columns.get_loc("cost")] = -1.0
    df.iloc[3, df.columns.get_loc("model")] = "gpt-x"
    df.iloc[4, df.columns.get_loc("prompt_id")] = "p2"  # duplicate of a valid row: first copy kept
    df.iloc[5, df.columns.get_loc("prompt_id")] = "p1"  # duplicate of a bad row: this copy kept
    # model "b" is left without a valid row: with models from a price sheet only a warning
    report = validate_logs_gx(df, models=MODELS, require_all=False)
    assert _names(report, "warning") == {"models_present"}
    valid, quarantine = quarantine_split(df, report)
    assert len(valid) + len(quarantine) == len(df)
    assert set(valid.index) | set(quarantine.index) == set(df.index)
    assert list(quarantine.columns) == list(df.columns) + ["reason"]
    reasons = dict(zip(quarantine.index, quarantine["reason"]))
    assert reasons == {
        101: "score_range; cost_nonnegative; unique_prompt_id",  # also the surplus copy of p1
        103: "model_in_set",
        104: "unique_prompt_id",
    }
    assert valid.index.tolist() == [100, 102, 105]
    assert valid["prompt_id"].is_unique


def test_run_data_checks_writes_three_files(tmp_path):
    df = _set("score", 2, 1.5)(_clean())
    path = write_frame(df, tmp_path / "logs.parquet")
    valid, report = run_data_checks(path, tmp_path / "out", models=MODELS)
    out = tmp_path / "out"
    assert len(valid) == 5 and not report.success
    q = pd.read_parquet(out / "quarantine.parquet")
    assert q["prompt_id"].tolist() == ["p2"] and q["reason"].tolist() == ["score_range"]
    assert len(pd.read_parquet(out / "valid.parquet")) == 5
    payload = json.loads((out / "report.json").read_text())
    assert payload["n_rows"] == 6 and payload["success"] is False
    assert [r["name"] for r in payload["results"] if not r["success"]] == ["score_range"]
    overlap = {r["model"]: r for r in payload["overlap"]}
    assert set(overlap) == set(MODELS) and sum(r["n_logged"] for r in overlap.values()) == 5

    clean_valid, clean_report = run_data_checks(_clean(), tmp_path / "clean", models=MODELS)
    assert clean_report.success and len(clean_valid) == 6
    assert len(pd.read_parquet(tmp_path / "clean" / "quarantine.parquet")) == 0


@pytest.mark.parametrize(
    "df, models, name, needle",
    [
        (_clean(), MODELS + ["d"], "models_present", "'d'"),
        (_clean().drop(columns=["score"]), MODELS, "columns_exist", "'score'"),
    ],
    ids=["configured model absent", "missing column"],
)
def test_run_data_checks_raises_on_frame_level_failure(tmp_path, df, models, name, needle):
    with pytest.raises(DataValidationError) as info:
        run_data_checks(df, tmp_path, models=models)
    err = info.value
    assert isinstance(err, ValueError) and name in str(err) and needle in str(err)
    assert err.report is not None and name in err.report.summary()
    assert len(pd.read_parquet(tmp_path / "valid.parquet")) == 0
    q = pd.read_parquet(tmp_path / "quarantine.parquet")
    assert len(q) == len(df) and q["reason"].str.startswith(name).all()
    assert json.loads((tmp_path / "report.json").read_text())["success"] is False
