"""Ingest: decisions with feedback become log rows by time, the newest slice the holdout, bad rows
quarantined, the data version recorded with DVC, and a second run adds nothing."""

import hashlib
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from causal_router.cli import app
from causal_router.serving.ingest import ingest
from causal_router.serving.store import DecisionStore
from causal_router.validation.contract import check_logs

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def fill(store, n, start=0, bad=()):
    """n decisions one minute apart, each with feedback; ``bad`` ones get an out-of-range score."""
    rows = [{"decision_id": f"dec-{i:04d}", "created_at": T0 + timedelta(minutes=i), "request_id": f"r{i}",
             "prompt": f"prompt {i}", "model": ["model-a", "model-b"][i % 2], "propensity": 0.9 if i % 2 else 0.1,
             "lam": 1.0, "explore": 0.1, "router_name": "causal-router-interval", "router_version": "3",
             "input_tokens": 20.0} for i in range(start, start + n)]
    store.add_decisions(rows[::-1])  # insertion order must not matter: ingest orders by time
    for i in range(start, start + n):
        store.add_feedback(f"dec-{i:04d}", 1.5 if i in bad else (i % 5) / 5, 0.001 * i, 30)
    return rows


@pytest.fixture
def logs_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    src = ROOT / "samples" / "llmrouter_logs"
    for name, n in (("train", 50), ("val", 20), ("holdout", 20)):
        pd.read_parquet(src / f"{name}.parquet").head(n).to_parquet(d / f"{name}.parquet", index=False)
    return d


def digest(folder: Path) -> dict:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.parquet"))}


def test_ingest_appends_by_time_and_the_newest_slice_becomes_the_holdout(tmp_path, logs_dir):
    store = DecisionStore(f"sqlite:///{tmp_path / 'd.db'}")
    old_holdout = pd.read_parquet(logs_dir / "holdout.parquet")
    fill(store, 30, bad={7})
    store.add_decisions([{"decision_id": "no-feedback", "created_at": T0,
                          "request_id": "r", "prompt": "p", "model": "model-a", "propensity": 0.5, "lam": 1.0,
                          "explore": 0.1, "router_name": "x", "router_version": "3", "input_tokens": 1.0}])
    report = ingest(store, logs_dir, holdout_fraction=0.2, dvc=False)
    assert (report.added, report.quarantined, report.to_holdout, report.to_train) == (29, 1, 6, 23)
    hold = pd.read_parquet(logs_dir / "holdout.parquet")
    train = pd.read_parquet(logs_dir / "train.parquet")
    # the six newest good decisions are the holdout; the old holdout now trains
    assert hold["prompt_id"].tolist() == [f"dec-{i:04d}" for i in range(24, 30)]
    assert set(old_holdout["prompt_id"]) <= set(train["prompt_id"]) and len(train) == 50 + 20 + 23
    new = train[train["prompt_id"].str.startswith("dec-")]
    assert new["timestamp"].is_monotonic_increasing  # appended by time
    assert "no-feedback" not in set(train["prompt_id"]) | set(hold["prompt_id"])
    row = hold.set_index("prompt_id").loc["dec-0025"]
    assert row["model"] == "model-b" and row["propensity"] == 0.9 and row["cost"] == pytest.approx(0.025)
    assert check_logs(train) == [] and check_logs(hold) == []  # both still meet the data contract
    q = pd.read_parquet(report.quarantine_file)
    assert q["prompt_id"].tolist() == ["dec-0007"] and "score_range" in q["reason"].iloc[0]
    assert "quarantined 1" in report.summary() and "29" in report.summary()

    before = digest(logs_dir)
    again = ingest(store, logs_dir, holdout_fraction=0.2, dvc=False)
    assert again.added == 0 and again.quarantined == 0 and digest(logs_dir) == before
    assert "nothing to ingest" in again.summary()
    # new feedback later: only that is added
    fill(store, 5, start=100)
    third = ingest(store, logs_dir, holdout_fraction=0.2, dvc=False)
    assert third.added == 5 and third.to_holdout == 1


def test_the_holdout_accumulates_up_to_its_cap_and_nothing_is_lost(tmp_path, logs_dir):
    """With ``holdout_max_rows`` the gate's holdout grows ingest after ingest (it needs rows where the
    routers disagree); beyond the cap its oldest rows join the training logs, none lost or doubled."""
    store = DecisionStore(f"sqlite:///{tmp_path / 'd.db'}")
    before = {n: pd.read_parquet(logs_dir / f"{n}.parquet") for n in ("train", "holdout")}
    fill(store, 30)
    first = ingest(store, logs_dir, holdout_fraction=0.2, dvc=False, holdout_max_rows=30)
    hold = pd.read_parquet(logs_dir / "holdout.parquet")
    # the old 20 rows stay and the newest 6 join: 26 rows, under the cap
    assert first.to_holdout == 6 and len(hold) == 26
    assert hold["prompt_id"].tolist()[:20] == before["holdout"]["prompt_id"].tolist()
    assert hold["prompt_id"].tolist()[20:] == [f"dec-{i:04d}" for i in range(24, 30)]
    fill(store, 30, start=100)
    ingest(store, logs_dir, holdout_fraction=0.2, dvc=False, holdout_max_rows=30)
    hold = pd.read_parquet(logs_dir / "holdout.parquet")
    train = pd.read_parquet(logs_dir / "train.parquet")
    # 26 + 6 = 32 > 30: the two oldest holdout rows now train
    assert len(hold) == 30 and hold["prompt_id"].tolist()[-6:] == [f"dec-{i:04d}" for i in range(124, 130)]
    assert set(before["holdout"]["prompt_id"][:2]) <= set(train["prompt_id"])
    everything = pd.concat([train, hold])["prompt_id"]
    assert everything.is_unique and len(everything) == 50 + 20 + 60
    assert check_logs(train) == [] and check_logs(hold) == []
    with pytest.raises(ValueError, match="holdout max rows"):
        ingest(store, logs_dir, dvc=False, holdout_max_rows=0)


def test_rows_already_in_the_logs_are_not_added_twice(tmp_path, logs_dir):
    """A crash after writing the logs but before the store recorded the ingest."""
    store = DecisionStore(f"sqlite:///{tmp_path / 'd.db'}")
    fill(store, 10)
    ingest(store, logs_dir, holdout_fraction=0.0, dvc=False)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM ingested")  # simulate the lost bookkeeping
    report = ingest(store, logs_dir, holdout_fraction=0.0, dvc=False)
    assert report.added == 0 and report.already_present == 10
    train = pd.read_parquet(logs_dir / "train.parquet")
    assert train["prompt_id"].is_unique and len(train) == 60


def test_the_cli_records_the_data_version_with_dvc(tmp_path, logs_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for k, v in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                 "GIT_COMMITTER_EMAIL": "t@t", "DVC_NO_ANALYTICS": "1"}.items():
        monkeypatch.setenv(k, v)
    subprocess.run(["git", "init", "-q"], check=True)
    from dvc.repo import Repo

    Repo.init(str(tmp_path)).add("data")
    before = yaml.safe_load((tmp_path / "data.dvc").read_text())["outs"][0]["md5"]
    uri = f"sqlite:///{tmp_path / 'decisions' / 'decisions.db'}"
    fill(DecisionStore(uri), 12)
    out = CliRunner().invoke(app, ["ingest", "--store", uri, "--data-dir", "data", "--holdout-fraction", "0.25"])
    assert out.exit_code == 0, out.output
    after = yaml.safe_load((tmp_path / "data.dvc").read_text())["outs"][0]["md5"]
    assert after != before and after in out.output
    assert "ingested 12" in out.output and "newest 3" in out.output
    out = CliRunner().invoke(app, ["ingest", "--store", uri, "--data-dir", "data"])
    assert out.exit_code == 0 and "nothing to ingest" in out.output
    assert yaml.safe_load((tmp_path / "data.dvc").read_text())["outs"][0]["md5"] == after


def test_a_bad_holdout_fraction_is_refused(tmp_path):
    out = CliRunner().invoke(app, ["ingest", "--store", f"sqlite:///{tmp_path / 'd.db'}", "--holdout-fraction", "1.5"])
    assert out.exit_code == 1 and "holdout fraction" in out.output


def test_whole_input_tokens_are_ingested_as_whole_tokens_and_int_tokens_validate(tmp_path, logs_dir):
    """The service logs input tokens as ints (a count): ingest keeps them whole, and logs whose token
    columns are integers pass the contract."""
    store = DecisionStore(f"sqlite:///{tmp_path / 'd.db'}")
    rows = fill(store, 10)
    store.add_decisions([{**rows[0], "decision_id": "int-tokens", "created_at": T0 + timedelta(hours=1),
                          "input_tokens": 137}])
    store.add_feedback("int-tokens", 0.5, 0.001, 30)
    assert ingest(store, logs_dir, holdout_fraction=0.2, dvc=False).added == 11
    logs = pd.concat([pd.read_parquet(logs_dir / f) for f in ("train.parquet", "holdout.parquet")])
    mine = logs.set_index("prompt_id").loc[["int-tokens", "dec-0003"], "input_tokens"]
    assert mine.tolist() == [137, 20] and all(float(t).is_integer() for t in logs["input_tokens"].dropna())
    ints = logs.dropna(subset=["input_tokens"]).astype({"input_tokens": "int64", "output_tokens": "Int64"})
    check_logs(ints)  # raises on a contract failure
