"""Every CLI command answers bad input with one readable line and exit code 1, never a traceback (issue 11)."""

import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from causal_router.cli import app
from causal_router.errors import UnreadableFileError
from causal_router.policy.routers import RandomRouter
from causal_router.policy.routerset import RouterSet
from tests.data.test_read_errors import UNREADABLE, _write
from tests.validation.bad_inputs import MODELS, base

COMMANDS = {
    "validate": lambda f, d: ["validate", f],
    "train": lambda f, d: ["train", f, "--val", f, "--out", d / "routers", "--cache-dir", d / "cache"],
    "embed": lambda f, d: ["embed", f, "--cache-dir", d / "cache"],
}


def run(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def assert_clean_failure(result, *needles):
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # no traceback
    assert "Traceback" not in result.output
    assert result.output.startswith("error: ") or "error: " in result.output
    for needle in needles:
        assert needle in result.output, result.output


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("case", list(UNREADABLE))
def test_unreadable_file_gives_one_line(tmp_path, command, case):
    name, data, _, needle = UNREADABLE[case]
    path = _write(tmp_path / name, data)
    result = run(*COMMANDS[command](path, tmp_path))
    assert_clean_failure(result, needle, str(path))
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("command", list(COMMANDS))
def test_missing_file_and_directory(tmp_path, command):
    assert_clean_failure(run(*COMMANDS[command](tmp_path / "nope.parquet", tmp_path)), "no such file")
    assert_clean_failure(run(*COMMANDS[command](tmp_path, tmp_path)), "is a directory")


def test_debug_shows_the_traceback(tmp_path):
    path = _write(tmp_path / "logs.parquet", b"garbage")
    result = run("--debug", "validate", path)
    assert isinstance(result.exception, UnreadableFileError)


# --------------------------------------------------------------------------- degenerate logs: validate == train


@pytest.fixture
def sheet(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text(yaml.safe_dump({m: {"input": 1.0, "output": 2.0} for m in MODELS + ["m-new"]}))
    return path


DEGENERATE = {
    "single model": (lambda df: df.assign(model="m-a"), False, "several_models"),
    "header only with --prices": (lambda df: df.iloc[0:0], True, "has_rows"),
    "model outside the price sheet": (lambda df: df.assign(model=["m-x"] + list(df["model"][1:])), True,
                                      "model_in_set"),
}


@pytest.mark.parametrize("case", list(DEGENERATE))
def test_validate_agrees_with_train_on_degenerate_logs(tmp_path, sheet, case):
    mutate, with_prices, check = DEGENERATE[case]
    path = tmp_path / "logs.parquet"
    mutate(base()).to_parquet(path, index=False)
    prices = ["--prices", sheet] if with_prices else []
    assert_clean_failure(run("validate", path, "--kind", "logs", *prices), check)
    assert_clean_failure(run(*COMMANDS["train"](path, tmp_path), *prices), check)


def test_price_sheet_model_without_rows_is_a_visible_warning(tmp_path, sheet):
    path = tmp_path / "logs.parquet"
    base().to_parquet(path, index=False)
    result = run("validate", path, "--kind", "logs", "--prices", sheet)
    assert result.exit_code == 0, result.output
    assert "warning: models_present" in result.output and "m-new" in result.output


def test_quarantine_is_reported(tmp_path):
    df = base()
    df.loc[2, "score"] = 7.0
    path = tmp_path / "logs.parquet"
    df.to_parquet(path, index=False)
    q = tmp_path / "q.parquet"
    result = run("validate", path, "--kind", "logs", "--quarantine", q)
    assert result.exit_code == 0
    assert f"11 valid row(s) kept, 1 row(s) quarantined to {q}" in result.output and "score_range" in result.output


# --------------------------------------------------------------------------- lambda


@pytest.fixture
def routers(tmp_path):
    rs = RouterSet(MODELS, [0.0, 100.0, 500.0], {"random": RandomRouter.for_models(3, random_state=0)}, "", {})
    return rs.save(tmp_path / "routers")


@pytest.mark.parametrize("lam", ["-1", "nan", "inf", "-inf", "1e9"])
def test_route_and_evaluate_refuse_bad_lambda(tmp_path, routers, lam):
    assert_clean_failure(run("route", routers, "hello", "--method", "random", "--lam", lam),
                         "allowed range [0, 5000]")
    assert_clean_failure(run("evaluate", routers, "--table", tmp_path / "t.parquet", "--lambdas", f"0,{lam}",
                             "--out", tmp_path / "m.json"), "allowed range [0, 5000]")
    assert not math.isfinite(float(lam)) or float(lam) < 0 or float(lam) > 5000


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompts=st.lists(st.text(max_size=40).filter(lambda p: p != "-"), min_size=1, max_size=3),
       lam=st.floats(min_value=0, max_value=5000))
def test_route_generated_prompts(tmp_path_factory, prompts, lam):
    """Any text (emoji, control characters, right-to-left, empty) is routed to a known model.
    ("-" is not a prompt but the stdin marker: test_route_reads_stdin_and_refuses_a_stray_dash.)"""
    d = tmp_path_factory.mktemp("route")
    rs = RouterSet(MODELS, [0.0, 100.0, 500.0], {"random": RandomRouter.for_models(3, random_state=0)}, "", {})
    rs.save(d / "routers")
    result = run("route", d / "routers", "--method", "random", "--lam", repr(lam), "--cache-dir", d / "cache",
                 "--", *prompts)
    assert result.exit_code == 0, result.output
    chosen = [line.split("\t")[0] for line in result.stdout.split("\n") if "\t" in line]
    assert len(chosen) >= len(prompts) and set(chosen[:1]) <= set(MODELS)


def test_route_reads_stdin_and_refuses_a_stray_dash(tmp_path, routers):
    opts = ("--method", "random", "--lam", "100", "--cache-dir", tmp_path / "cache", "--")
    result = run("route", routers, *opts, "-", input="first prompt\nsecond prompt\n")
    assert result.exit_code == 0, result.output
    assert len([line for line in result.stdout.split("\n") if "\t" in line]) == 2
    assert_clean_failure(run("route", routers, *opts, "hello", "-"), "'-' alone")
    assert_clean_failure(run("route", routers, *opts, "-", input=""), "'-' alone")


@pytest.mark.parametrize("lambdas", ["-5,0", "0,nan", "inf", ""])
def test_train_refuses_a_bad_lambda_grid(tmp_path, lambdas):
    path = tmp_path / "logs.parquet"
    base().to_parquet(path, index=False)
    result = run(*COMMANDS["train"](path, tmp_path), "--lambdas", lambdas)
    assert result.exit_code == 2 and "lambdas" in result.output and "Traceback" not in result.output


SHEETS = {
    "missing price sheet": (None, "no such price sheet"),
    "price sheet not YAML": ("m-a: {input: [1,\n", "not a readable price sheet"),
    "price sheet not a mapping": ("- m-a\n- m-b\n", "maps model names"),
    "price entry without input": ("m-a: {output: 1}\n", "bad price entry for model 'm-a'"),
    "negative price": ("m-a: {input: -1, output: 1}\n", "negative or non-finite price"),
    "infinite price": ("m-a: {input: .inf, output: 1}\n", "negative or non-finite price"),
}


@pytest.mark.parametrize("case", list(SHEETS))
def test_bad_price_sheet_is_refused(tmp_path, case):
    text, needle = SHEETS[case]
    sheet = tmp_path / "prices.yaml"
    if text is not None:
        sheet.write_text(text)
    logs = tmp_path / "logs.parquet"
    base().to_parquet(logs, index=False)
    assert_clean_failure(run("validate", logs, "--kind", "logs", "--prices", sheet), needle, "prices.yaml")
    assert_clean_failure(run(*COMMANDS["train"](logs, tmp_path), "--prices", sheet), needle)


def _table_with_a_bad_score(path):
    """A full-feedback table (every prompt x every model) with one out-of-range score: a row error."""
    import pandas as pd

    rows = [{"prompt_id": f"p{i}", "prompt": f"question {i}", "model": m, "score": 0.5, "cost": 0.001,
             "input_tokens": 10 + i} for i in range(6) for m in MODELS]
    rows[4]["score"] = 1.5
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def test_evaluate_hints_name_only_its_own_options(tmp_path, routers):
    """The data contract's hint came from the shared loader and named validate's --quarantine, which
    evaluate lacks: other commands point at causal-router validate, only validate names the option."""
    table = _table_with_a_bad_score(tmp_path / "table.parquet")
    out = run("evaluate", routers, "--table", table, "--lambdas", "0,100", "--out", tmp_path / "m.json")
    assert_clean_failure(out, "score", "causal-router validate")
    assert "--quarantine" not in out.output
    checked = run("validate", table)
    assert_clean_failure(checked, "with --quarantine FILE")
