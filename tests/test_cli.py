"""CLI round trip on a few hundred prompts of the bundled sample: simulate, train, evaluate, route."""

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from causal_router.cli import app

ROOT = Path(__file__).resolve().parents[1]
LAMBDAS = "0,7400,37000"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    table = pd.read_parquet(ROOT / "samples" / "llmrouter_9models_sample.parquet")
    keep = table["prompt_id"].drop_duplicates().sample(400, random_state=0)
    table[table["prompt_id"].isin(keep)].to_parquet(d / "table.parquet", index=False)
    return d


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_simulate_train_evaluate_route(workdir):
    cache = workdir / "cache"
    invoke("simulate", workdir / "table.parquet", "--policy", "previous-router", "--seed", "0",
           "--out", workdir / "logs", "--cache-dir", cache)
    for split in ("train", "val", "test", "holdout"):
        assert (workdir / "logs" / f"{split}.parquet").exists()
    assert "propensity" in pd.read_parquet(workdir / "logs" / "train.parquet")
    out = invoke("train", workdir / "logs" / "train.parquet", "--val", workdir / "logs" / "val.parquet",
                 "--lambdas", LAMBDAS, "--methods", "best-single,naive,rm-softmax,rm-interval",
                 "--prices", ROOT / "configs" / "prices" / "llmrouter_9models.yaml",
                 "--out", workdir / "routers", "--cache-dir", cache)
    assert "propensity clipping" in out  # the clipping report is never silent
    invoke("evaluate", workdir / "routers", "--table", workdir / "logs" / "test.parquet", "--lambdas", LAMBDAS,
           "--out", workdir / "metrics.json", "--plot", workdir / "utility.png", "--cache-dir", cache)
    records = json.loads((workdir / "metrics.json").read_text())
    assert {"method", "lambda", "utility", "regret", "accuracy", "cost"} <= set(records[0])
    methods = {r["method"] for r in records}
    assert {"oracle", "random", "logging-policy", "rm-softmax", "rm-interval"} <= methods
    for r in records:
        assert r["regret"] >= -1e-9 and 0 <= r["accuracy"] <= 1
    assert (workdir / "utility.png").stat().st_size > 1000
    out = invoke("route", workdir / "routers", "--method", "rm-interval", "--lam", "20000",
                 "Solve 12 * 7.", "Who wrote Hamlet?", "--cache-dir", cache)
    models = json.loads((workdir / "routers" / "manifest.json").read_text())["models"]
    lines = out.strip().splitlines()
    assert len(lines) == 2 and all(line.split("\t")[0] in models for line in lines)


def test_validate_exit_codes(workdir, tmp_path):
    good = workdir / "table.parquet"
    assert CliRunner().invoke(app, ["validate", str(good)]).exit_code == 0
    bad = pd.read_parquet(good)
    bad.loc[3, "score"] = 1.7
    bad.to_parquet(tmp_path / "bad.parquet", index=False)
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "bad.parquet")])
    assert result.exit_code == 1
    assert "score" in result.output and "3" in result.output


def test_train_rejects_unknown_method(workdir):
    logs = workdir / "logs"
    if not (logs / "train.parquet").exists():
        pytest.skip("needs the round trip's logs")
    result = CliRunner().invoke(app, ["train", str(logs / "train.parquet"), "--val", str(logs / "val.parquet"),
                                      "--methods", "nope", "--out", str(workdir / "r2"),
                                      "--cache-dir", str(workdir / "cache")])
    assert result.exit_code == 1 and "nope" in result.output


def test_train_with_an_evaluation_set(workdir, tmp_path):
    logs = workdir / "logs"
    if not (logs / "train.parquet").exists():
        pytest.skip("needs the round trip's logs")
    table = pd.read_parquet(workdir / "table.parquet")
    ids = pd.read_parquet(logs / "train.parquet")["prompt_id"].drop_duplicates().head(30)
    eval_set = table[table["prompt_id"].isin(ids)]
    eval_set.to_parquet(tmp_path / "eval.parquet", index=False)
    args = ["train", logs / "train.parquet", "--val", logs / "val.parquet", "--lambdas", LAMBDAS,
            "--methods", "naive", "--prices", ROOT / "configs" / "prices" / "llmrouter_9models.yaml",
            "--cache-dir", workdir / "cache"]
    out = invoke(*args, "--eval-set", tmp_path / "eval.parquet", "--out", tmp_path / "routers")
    assert f"evaluation set: {len(eval_set)} scored rows on 30 prompts join the outcome models" in out
    manifest = json.loads((tmp_path / "routers" / "manifest.json").read_text())
    assert manifest["meta"]["n_scored"] == len(eval_set)
    assert manifest["meta"]["eval_set"] == str(tmp_path / "eval.parquet")
    # a model the routers do not route to is named, not a traceback
    eval_set.assign(model=eval_set["model"].where(eval_set["model"] != eval_set["model"].iloc[0], "mystery-llm")) \
        .to_parquet(tmp_path / "bad.parquet", index=False)
    result = CliRunner().invoke(app, [str(a) for a in (*args, "--eval-set", tmp_path / "bad.parquet",
                                                       "--out", tmp_path / "r2")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "mystery-llm" in result.output and "Traceback" not in result.output


def test_embed_honours_explicit_precision_and_threads(workdir, monkeypatch):
    from causal_router.features import calibration

    def no_calibration(*args, **kwargs):
        raise AssertionError("an explicit precision must not calibrate")

    monkeypatch.setattr(calibration, "cpu_precision", no_calibration)
    small = workdir / "small.parquet"
    pd.read_parquet(workdir / "table.parquet").drop_duplicates("prompt_id").head(5).to_parquet(small)
    out = invoke("embed", small, "--precision", "fp32", "--threads", "1", "--cache-dir", workdir / "embed-cache")
    assert out.startswith("5 prompts: 5 embedded")
    bad = CliRunner().invoke(app, ["embed", str(small), "--threads", "0"])
    assert bad.exit_code == 2 and "--threads" in bad.output
    import torch

    if not torch.cuda.is_available():  # a GPU asked for on a machine without one: one line, no traceback
        no_gpu = CliRunner().invoke(app, ["embed", str(small), "--device", "cuda", "--cache-dir", str(workdir / "x")])
        assert no_gpu.exit_code == 1 and "no CUDA GPU" in no_gpu.output and "Traceback" not in no_gpu.output


def test_train_jobs_fits_the_same_routers_and_refuses_zero(workdir, tmp_path):
    import torch

    from causal_router.policy.routerset import RouterSet

    logs = workdir / "logs"
    if not (logs / "train.parquet").exists():
        pytest.skip("needs the round trip's logs")
    args = ["train", logs / "train.parquet", "--val", logs / "val.parquet", "--lambdas", LAMBDAS,
            "--methods", "rm-classification,rm-softmax", "--cache-dir", workdir / "cache",
            "--prices", ROOT / "configs" / "prices" / "llmrouter_9models.yaml"]
    invoke(*args, "--out", tmp_path / "one")
    invoke(*args, "--jobs", "2", "--out", tmp_path / "two")
    one, two = RouterSet.load(tmp_path / "one").routers, RouterSet.load(tmp_path / "two").routers
    for name, router in one.items():  # the same weights and fallbacks (the pickles' storage layout may differ)
        assert list(router.fallback_) == list(two[name].fallback_)
        for a, b in zip(router.nets_, two[name].nets_):
            assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    result = CliRunner().invoke(app, [str(a) for a in (*args, "--jobs", "0", "--out", tmp_path / "bad")])
    assert result.exit_code == 2 and "--jobs" in result.output and "Traceback" not in result.output
