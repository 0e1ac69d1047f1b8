"""What a new user hit at the entry points: ``--help`` of every flow prints help and does nothing else,
a missing params file is an error for every flow and command, the retrain summary is a table, and
the train flow prints one line per stage."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from causal_router.pipeline import entry

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module", ["flows.train", "flows.promote", "flows.retrain", "flows.deployed", "flows.loop"])
def test_flow_help_prints_help_and_runs_nothing(module, tmp_path, monkeypatch, capsys):
    import importlib

    mod = importlib.import_module(module)
    ran = []
    monkeypatch.setattr(entry, "run", lambda *a, **k: ran.append(a) or (0, None))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        mod.main(["--help"])
    assert done.value.code == 0 and not ran
    assert f"python -m {module}" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []  # no store, no artifacts, no params file read


@pytest.mark.parametrize("module, argv", [("flows.train", ["paramz.yaml"]), ("flows.promote", ["paramz.yaml"]),
                                          ("flows.retrain", ["--params", "paramz.yaml"])])
def test_flows_refuse_a_missing_params_file(module, argv, tmp_path, monkeypatch, capsys):
    import importlib

    mod = importlib.import_module(module)
    (tmp_path / "params.yaml").write_text("{}\n")
    monkeypatch.chdir(tmp_path)
    assert mod.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: params file not found: 'paramz.yaml'") and "Traceback" not in err
    assert not (tmp_path / "mlruns").exists()  # nothing started


@pytest.mark.parametrize("args", [["stage", "validate", "--params", "paramz.yaml"],
                                  ["stage", "train", "--params", "paramz.yaml"],
                                  ["promote", "--params", "paramz.yaml"],
                                  ["serve", "--params", "paramz.yaml"]])
def test_commands_refuse_a_missing_params_file(args, tmp_path, monkeypatch):
    from causal_router.cli import app

    (tmp_path / "params.yaml").write_text("{}\n")
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 1, out.output
    assert "params file not found: 'paramz.yaml'" in out.output and "Traceback" not in out.output


def test_commands_refuse_an_unknown_key(tmp_path, monkeypatch):
    from causal_router.cli import app

    (tmp_path / "params.yaml").write_text("serve: {explor: 0.3}\n")
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(app, ["serve"])
    assert out.exit_code == 1 and "unknown key 'explor' in section 'serve'" in out.output


def test_retrain_summary_is_a_table():
    out = {"ingested": {"added": 8, "quarantined": 1, "data_version": "abc123"}, "run_id": "r1",
           "decisions": [{"name": "causal-router-interval", "decision": "promoted", "challenger_version": "3",
                          "champion_version": None, "reason": "no champion yet",
                          "difference": None},
                         {"name": "causal-router-endpoint-0", "decision": "rejected", "challenger_version": "4",
                          "champion_version": "2", "reason": "difference below 0",
                          "difference": {"value": -0.01, "ci_low": -0.02, "ci_high": 0.0}}]}
    text = entry.retrain_table(out)
    assert "{" not in text and "ingested   8 decision(s), 1 quarantined, data version abc123" in text
    lines = text.splitlines()
    head = next(line for line in lines if line.startswith("router"))
    rows = [line for line in lines if line.startswith("causal-router-")]
    assert len(rows) == 2 and all(r.index("v") <= len(head) for r in rows)
    assert "vNone" not in text and "-0.0100 [-0.0200, +0.0000]" in rows[1]


def test_timed_prints_one_line_per_stage(capsys):
    from causal_router.pipeline.tasks import timed

    with timed("crossfit") as note:
        note.append("cached")
    with timed("train"):
        pass
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("crossfit") and lines[0].endswith("s  (cached)") and lines[1].startswith("train")


def test_flow_parameters_raise_no_pydantic_warning():
    """A flow parameter named like a pydantic attribute (``register``) printed a "shadows" warning per run."""
    import warnings

    from flows.promote import promote_flow
    from flows.retrain import retrain_flow
    from flows.train import train_flow

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_flow.validate_parameters({"params_path": "params.yaml", "root": ".", "register_models": False})
        promote_flow.validate_parameters({"params_path": "params.yaml", "root": ".", "names": None})
        retrain_flow.validate_parameters({"params_path": "params.yaml", "root": "."})
