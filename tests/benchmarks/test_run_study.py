"""The paper protocol's study (:func:`benchmarks.protocol.run_study`) on a few hundred prompts of the bundled
sample: the records of every (policy, seed), with the features' precision and CPU as columns."""

from pathlib import Path

import pandas as pd

from benchmarks.protocol import parse_policies, run_study, summarize
from causal_router.features.embed import embed_texts
from causal_router.features.encoder import TransformerEncoder
from causal_router.features.hardware import cpu_model
from causal_router.validation.loaders import load_full_feedback

ROOT = Path(__file__).resolve().parents[2]


def test_run_study_writes_records(tmp_path):
    table = pd.read_parquet(ROOT / "samples" / "llmrouter_9models_sample.parquet")
    keep = table["prompt_id"].drop_duplicates().sample(400, random_state=0)
    table[table["prompt_id"].isin(keep)].to_parquet(tmp_path / "table.parquet", index=False)
    ff = load_full_feedback(tmp_path / "table.parquet")
    enc = TransformerEncoder(precision="fp32")
    X = embed_texts(list(ff.prompts), cache_dir=tmp_path / "cache", encoder=enc)
    out = tmp_path / "bench"
    records = run_study(ff, X, parse_policies("uniform,cost-biased:3"), [0], [0.0, 37000.0], out, "table",
                        ["best-single", "naive"], peers=False,
                        meta={"embedding_precision": enc.resolved_precision, "cpu_model": cpu_model()})
    summarize(records).to_csv(out / "summary.csv", index=False)
    records = pd.read_csv(out / "records.csv")
    expected = ["dataset", "policy", "strength", "seed", "method", "lambda", "utility", "regret", "accuracy",
                "cost", "train_seconds"]
    assert expected == list(records.columns[:len(expected)])
    assert set(records["policy"]) == {"uniform", "cost-biased"}
    assert {"oracle", "logging-policy", "full-feedback", "best-single", "naive"} <= set(records["method"])
    assert (records.loc[records["policy"] == "cost-biased", "strength"] == 3.0).all()
    assert (records["embedding_precision"] == "fp32").all() and records["cpu_model"].notna().all()  # pinned
    assert (out / "summary.csv").exists()
