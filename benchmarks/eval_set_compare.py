"""The evaluation-set study with the static encoder against MiniLM, paired by seed (issue 33).

Reads ``benchmarks/results/eval_set/eval_set.csv`` (MiniLM, the committed study) and a static run
(``python -m benchmarks.eval_set --encoder static --tag static`` -> ``static.csv``), and writes per table,
method and evaluation-set size M: the study mean (test utility over the loggers and the lambda grid) of
each encoder, and static - MiniLM per seed, its mean and standard error paired over the seeds both have.

Run: ``python -m benchmarks.eval_set_compare [--static CSV] [--out MD]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from .common import results_dir

KEYS = ["dataset", "method", "eval_prompts", "seed"]


def compare(minilm: pd.DataFrame, static: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, method, eval_prompts): both study means, the paired difference and its SE."""
    cells = ["dataset", "policy", "seed", "eval_prompts", "method", "lambda"]
    both = minilm.merge(static, on=cells, suffixes=("_minilm", "_static"))
    per_seed = both.groupby(KEYS)[["utility_minilm", "utility_static"]].mean().reset_index()
    per_seed["diff"] = per_seed["utility_static"] - per_seed["utility_minilm"]
    g = per_seed.groupby(KEYS[:-1])
    out = g[["utility_minilm", "utility_static", "diff"]].mean()
    out["paired_se"] = g["diff"].std(ddof=1) / np.sqrt(g["diff"].count())
    out["seeds"] = g["diff"].count()
    return out.reset_index()


def report(table: pd.DataFrame, command: str) -> str:
    lines = ["# The evaluation-set study: static encoder against MiniLM (issue 33)", "",
             f"`{command}`; study mean = test utility over the loggers (cost-biased:3, previous-router) and the "
             "lambda grid, per seed; static - MiniLM paired over the seeds (standard error in brackets). "
             "The simulated logs are the same in both (the logging policies read MiniLM features).", "",
             "| table | method | M | seeds | MiniLM | static | static - MiniLM |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in table.itertuples():
        lines.append(f"| {r.dataset} | {r.method} | {r.eval_prompts} | {r.seeds} | {r.utility_minilm:.4f} | "
                     f"{r.utility_static:.4f} | {r.diff:+.4f} ({r.paired_se:.4f}) |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    d = results_dir("eval_set")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--static", type=Path, default=d / "static.csv")
    ap.add_argument("--out", type=Path, default=d / "static_vs_minilm.md")
    args = ap.parse_args(argv)
    table = compare(pd.read_csv(d / "eval_set.csv"), pd.read_csv(args.static))
    args.out.write_text(report(table, "python -m benchmarks.eval_set_compare"))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
