"""The static encoder against MiniLM in the paper protocol, paired by seed: reads a static run of
``python -m benchmarks.paper_protocol --encoder static`` and the committed MiniLM study, and writes the
mean test utility over lambdas per (policy, method) with the paired difference and its standard error.

Run: ``python -m benchmarks.static_vs_minilm [--static CSV] [--out MD]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from .common import results_dir

METHODS = ("rm-softmax", "rm-interval", "naive", "dr-regress", "best-single", "full-feedback")
KEYS = ["dataset", "policy", "requested_strength", "seed", "method"]


def compare(static: pd.DataFrame, minilm: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, policy, strength, method): both means over the static run's seeds and the
    paired difference (static - MiniLM) with its standard error over seeds."""
    means = [d.groupby(KEYS, dropna=False)["utility"].mean().reset_index() for d in (static, minilm)]
    j = means[0].merge(means[1], on=KEYS, suffixes=("_static", "_minilm"))
    j = j[j["method"].isin(METHODS)]
    j["diff"] = j["utility_static"] - j["utility_minilm"]
    rows = []
    for key, g in j.groupby(KEYS[:3] + ["method"], dropna=False):
        d = g["diff"].to_numpy()
        rows.append(dict(zip(KEYS[:3] + ["method"], key), seeds=len(d), static=g["utility_static"].mean(),
                         minilm=g["utility_minilm"].mean(), diff=d.mean(),
                         se=d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")))
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--static", default=str(results_dir("paper_protocol_static") / "routerbench_subset.csv"))
    ap.add_argument("--minilm", default=str(results_dir("paper_protocol") / "paper_protocol.csv"))
    ap.add_argument("--out", default=str(results_dir("paper_protocol_static") / "comparison.md"))
    args = ap.parse_args()
    static = pd.read_csv(args.static)
    table = compare(static, pd.read_csv(args.minilm))
    lines = [
        "# The static encoder against MiniLM, paired by seed (issue 33)", "",
        f"Static run: `{Path(args.static).as_posix()}` ({static['encoder'].iloc[0]}; the simulated logs read the "
        "MiniLM fp32 features, so both runs judge the methods on the same logs), CPU "
        f"{static['cpu_model'].iloc[0]}; MiniLM: the committed study. Mean test utility over the lambda grid; "
        "`diff` = static - MiniLM, its standard error paired over the seeds.", "",
        "| dataset | policy | method | seeds | static | MiniLM | diff (SE) |", "|---|---|---|---|---|---|---|"]
    for r in table.itertuples(index=False):
        pol = r.policy + ("" if pd.isna(r.requested_strength) else f" beta={r.requested_strength:g}")
        lines.append(f"| {r.dataset} | {pol} | {r.method} | {r.seeds} | {r.static:.4f} | {r.minilm:.4f} | "
                     f"{r.diff:+.4f} ({r.se:.4f}) |")
    lines += ["", "Commands: `python -m benchmarks.paper_protocol --encoder static --no-peers --datasets "
              "routerbench_subset --policies uniform,cost-biased:3 --seeds 0,1,2 --out "
              "benchmarks/results/paper_protocol_static` (540 s here), then `python -m benchmarks.static_vs_minilm`.",
              "Not yet measured: LLMRouter, the other two loggers, seeds 3-4, the evaluation-set variant and the "
              "loop study's arms."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
