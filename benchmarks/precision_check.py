"""Do the paper-protocol figures hold on another machine and another embedding precision?

Compares two runs of ``benchmarks.paper_protocol`` (their per-row CSVs) method by method: the mean
utility over seeds and lambdas per (dataset, logs, method), both runs' means, their difference and the
largest single-cell move. The goal: no method's mean moves by more than ``--tolerance`` (0.005).

    python -m benchmarks.paper_protocol --datasets routerbench_subset --seeds 0,1,2,3,4 --precision bf16 --out DIR
    python -m benchmarks.precision_check --other DIR/routerbench_subset.csv --tag bf16_amd_avx512bf16

Writes ``benchmarks/results/precision_check/TAG.csv`` and ``.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from .common import results_dir, shown

KEYS = ["dataset", "policy", "requested_strength", "method"]


def describe(df: pd.DataFrame) -> str:
    """'precision on CPU' of a run (from its rows), with the precision of the features its simulated
    logging policies read where the run records it (before that column, the same as the methods')."""
    world = df["embedding_precision"]
    if "world_precision" in df:
        world = df["world_precision"].fillna(world)
    return ", ".join(sorted({f"{p} on {c}, logs simulated from {w} features"
                             for p, c, w in zip(df["embedding_precision"], df["cpu_model"], world)}))


def compare(ref: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, policy, strength, method): both means over the seeds and lambdas both runs hold."""
    on = KEYS + ["seed", "lambda"]  # previous-router's fitted strength differs by seed: not a key
    ref, other = ref.copy(), other.copy()
    for d in (ref, other):
        d["requested_strength"] = d["requested_strength"].fillna(-1)
    cells = ref[on + ["utility"]].merge(other[on + ["utility"]], on=on, suffixes=("_ref", "_other"))
    cells["move"] = cells["utility_other"] - cells["utility_ref"]
    g = cells.groupby(KEYS)
    out = pd.DataFrame({"mean_ref": g["utility_ref"].mean(), "mean_other": g["utility_other"].mean(),
                        "cells": g.size(), "largest_cell_move": g["move"].apply(lambda s: s.abs().max())})
    out["difference"] = out["mean_other"] - out["mean_ref"]
    out = out.reset_index()
    out["requested_strength"] = out["requested_strength"].where(out["requested_strength"] >= 0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", default=str(results_dir("paper_protocol") / "paper_protocol.csv"))
    ap.add_argument("--other", required=True, help="the second run's per-row CSV")
    ap.add_argument("--tag", required=True)
    ap.add_argument("--tolerance", type=float, default=0.005)
    ap.add_argument("--out", default=str(results_dir("precision_check")))
    args = ap.parse_args()
    ref, other = pd.read_csv(args.ref), pd.read_csv(args.other)
    ref = ref[ref["dataset"].isin(other["dataset"].unique())]
    res = compare(ref, other)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res.to_csv(out / f"{args.tag}.csv", index=False)
    worst = res.loc[res["difference"].abs().idxmax()]
    moved = res[res["difference"].abs() > args.tolerance]
    logs = lambda r: r["policy"] + ("" if pd.isna(r["requested_strength"]) else f" beta={r['requested_strength']:g}")  # noqa: E731
    lines = [f"# Paper-protocol figures on another machine or precision ({args.tag})", "",
             f"Reference: `{shown(args.ref)}` ({describe(ref)}). Other: `{shown(args.other)}` ({describe(other)}).", "",
             "Means of utility over the seeds and lambdas both runs hold, per dataset, logs and method.", "",
             "| dataset | logs | method | reference | other | difference | largest cell move |",
             "|---|---|---|---:|---:|---:|---:|"]
    for _, r in res.iterrows():
        lines.append(f"| {r['dataset']} | {logs(r)} | {r['method']} | {r['mean_ref']:.4f} | {r['mean_other']:.4f} "
                     f"| {r['difference']:+.4f} | {r['largest_cell_move']:.4f} |")
    verdict = "met" if moved.empty else f"NOT met ({len(moved)} of {len(res)} means move by more than it)"
    per = res.assign(a=res["difference"].abs()).groupby("method")["a"].max().sort_values()
    lines += ["", "Largest move of any of a method's means, by method:", "",
              "| method | largest move of a mean | within tolerance |", "|---|---:|---|"]
    lines += [f"| {m} | {v:.4f} | {'yes' if v <= args.tolerance else 'NO'} |" for m, v in per.items()]
    lines += ["", f"Largest move of a mean: {worst['difference']:+.4f} ({worst['method']}, {logs(worst)}, "
              f"{worst['dataset']}). Goal: no mean moves by more than {args.tolerance}: **{verdict}**."]
    (out / f"{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-1:]))
    if not moved.empty:
        print(moved[KEYS + ["mean_ref", "mean_other", "difference"]].round(4).to_string(index=False))


if __name__ == "__main__":
    main()
