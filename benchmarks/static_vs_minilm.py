"""The static encoder against MiniLM in the paper protocol, paired by seed (issue 33).

Reads the records of ``python -m benchmarks.paper_protocol --encoder static --no-peers`` runs (one or
more files, e.g. several runs on different seeds or loggers, merged: a cell (dataset, logger, seed,
method, lambda) found twice keeps the last file's row) and the committed MiniLM study
(``benchmarks/results/paper_protocol/paper_protocol.csv``), and writes, per table:

* the **study mean** of the default router (``causal-router train``'s ``rm-interval``): its test
  utility averaged over the loggers and the lambda grid, for each seed; the difference static - MiniLM
  per seed, its mean and its standard error paired over the seeds; and the issue's rule (within
  :data:`TOLERANCE` of MiniLM's on both tables);
* the same study mean for every method (the per-method rows);
* the mean over lambdas per (logger, method), with the paired difference.

A study mean averages the loggers that the static run has on every one of its seeds on every table (a
logger with fewer seeds, or on one table only, is shown in the per-logger rows only), over the seeds both
runs have.

Run: ``python -m benchmarks.static_vs_minilm [--static CSV ...] [--merged CSV] [--out MD]``; with
several ``--static`` files the merged records are written to ``--merged`` (the default input).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .common import policy_label, results_dir, shown

#: The default router (``causal-router train``) and the methods compared.
DEFAULT = "rm-interval"
METHODS = ("rm-interval", "rm-softmax", "rm-classification", "naive", "dr-regress", "best-single", "full-feedback")
#: The issue's rule: the static encoder becomes the default if its study means are within this of MiniLM's
#: (read one-sided: static - MiniLM >= -TOLERANCE; a static encoder ahead by more is no reason to keep MiniLM).
TOLERANCE = 0.003
CELL = ["dataset", "policy", "requested_strength", "seed", "method", "lambda"]
OUT_DIR = results_dir("paper_protocol_static")


def merge(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Records of several static runs; a cell present twice keeps the later frame's row."""
    df = pd.concat(frames, ignore_index=True)
    return df.loc[~df.duplicated(subset=CELL, keep="last")].reset_index(drop=True)


def _labelled(records: pd.DataFrame) -> pd.DataFrame:
    df = records[records["method"].isin(METHODS)].copy()
    df["logger"] = [policy_label(p, s) for p, s in zip(df["policy"], df["requested_strength"].fillna(-1))]
    return df


def seed_means(static: pd.DataFrame, minilm: pd.DataFrame) -> pd.DataFrame:
    """Mean utility over lambdas per (dataset, logger, method, seed) for both encoders, on the cells both have:
    columns dataset, logger, method, seed, static, minilm, diff."""
    keys = ["dataset", "logger", "method", "seed"]
    means = [_labelled(d).groupby(keys)["utility"].mean().rename(n) for d, n in ((static, "static"),
                                                                                   (minilm, "minilm"))]
    j = pd.concat(means, axis=1, join="inner").reset_index()
    j["diff"] = j["static"] - j["minilm"]
    return j


def _paired(g: pd.DataFrame) -> dict:
    d = g["diff"].to_numpy()
    return dict(seeds=len(d), static=g["static"].mean(), minilm=g["minilm"].mean(), diff=d.mean(),
                se=d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan"))


def study_loggers(per: pd.DataFrame) -> dict[str, list[str]]:
    """Per dataset, the study mean's loggers: those present on every seed of their dataset, and on every
    dataset so, so that both tables' study means average the same loggers."""
    full = {name: {lg for lg, h in g.groupby("logger") if set(h["seed"]) == set(g["seed"])}
            for name, g in per.groupby("dataset", sort=False)}
    common = set.intersection(*full.values()) if full else set()
    return {name: sorted(common) for name in full}


def study_means(per: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, method): the mean over the study loggers (and lambdas) per seed, paired over seeds."""
    loggers = study_loggers(per)
    rows = []
    for (name, method), g in per.groupby(["dataset", "method"], sort=False):
        g = g[g["logger"].isin(loggers[name])]
        s = g.groupby("seed")[["static", "minilm", "diff"]].mean()
        rows.append(dict(dataset=name, method=method, loggers=len(loggers[name]), **_paired(s)))
    return pd.DataFrame(rows)


def by_logger(per: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, logger, method): the mean over lambdas, paired over seeds."""
    return pd.DataFrame([dict(dataset=n, logger=lg, method=m, **_paired(g))
                         for (n, lg, m), g in per.groupby(["dataset", "logger", "method"], sort=False)])


def loop_compare(static: pd.DataFrame, minilm: pd.DataFrame) -> pd.DataFrame:
    """The loop study's arms (``python -m benchmarks.loop_study --encoder static``) against the committed MiniLM
    rows on the same (dataset, seed, arm, explore): the last round's test utility and the mean deployed utility
    over rounds, paired over seeds."""
    keys = ["dataset", "arm", "explore", "seed"]
    out = []
    def pick(d: pd.DataFrame, column: str) -> pd.Series:
        g = d.sort_values("round").groupby(keys)[column]
        return g.last() if column == "test_utility" else g.mean()

    for column in ("test_utility", "deployed_utility"):
        j = pd.concat([pick(static, column).rename("static"), pick(minilm, column).rename("minilm")], axis=1,
                      join="inner")
        j["diff"] = j["static"] - j["minilm"]
        for (name, arm, explore), g in j.reset_index().groupby(keys[:3], sort=False):
            out.append(dict(dataset=name, arm=arm, explore=explore,
                            measure="final test utility" if column == "test_utility" else "mean deployed utility",
                            **_paired(g)))
    return pd.DataFrame(out)


def _cell(r) -> str:
    return f"{r.static:.4f} | {r.minilm:.4f} | {r.diff:+.4f} ({r.se:.4f})"


def report(static: pd.DataFrame, minilm: pd.DataFrame, static_name: str, meta: dict,
           loop: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> list[str]:
    per = seed_means(static, minilm)
    study, detail, loggers = study_means(per), by_logger(per), study_loggers(per)
    order = {m: i for i, m in enumerate(METHODS)}
    study = study.sort_values(["dataset", "method"], key=lambda c: c.map(order) if c.name == "method" else c)
    detail = detail.sort_values(["dataset", "logger", "method"],
                                key=lambda c: c.map(order) if c.name == "method" else c)
    default = study[study["method"] == DEFAULT]
    within = {r.dataset: r.diff >= -TOLERANCE for r in default.itertuples(index=False)}
    lines = [
        "# The static encoder against MiniLM in the paper protocol, paired by seed (issue 33)", "",
        f"Static records: `{static_name}` ({static['encoder'].iloc[0]}; CPU {static['cpu_model'].iloc[0]}; "
        "no EconML peer). The simulated logging policies read the MiniLM fp32 features in both runs, so both "
        "encoders' routers learn from the same logs and are scored on the same test prompts; only the methods' "
        "features differ. MiniLM: the committed study (`benchmarks/results/paper_protocol/paper_protocol.csv`, CPU "
        f"{minilm['cpu_model'].iloc[0]}). `diff` = static - MiniLM; its standard error is paired over the seeds "
        "(the standard error of the per-seed differences).", ""]
    if meta:
        lines += [f"Machine and load: {meta.get('machine', '')}", ""]
    lines += [
        "## Study means", "",
        f"Study mean: the test utility of a method averaged over the loggers and the lambda grid (the default "
        f"router: `{DEFAULT}`). Rule (issue 33): the static encoder becomes the default if its study means are "
        f"within {TOLERANCE} of MiniLM's on both tables, read here as diff >= -{TOLERANCE} on the point estimate; "
        f"`diff - 2 SE`: a rough lower bound of the difference (t with few seeds would be wider).", "",
        f"| table | loggers | seeds | static | MiniLM | diff (SE) | diff >= -{TOLERANCE} | diff - 2 SE |",
        "|---|---|---|---|---|---|---|---|"]
    for r in default.itertuples(index=False):
        lines.append(f"| {r.dataset} | {', '.join(loggers[r.dataset])} | {r.seeds} | {_cell(r)} | "
                     f"{'yes' if within[r.dataset] else 'NO'} | {r.diff - 2 * r.se:+.4f} |")
    verdict = ("within on both tables in the paper protocol (the rule also asks it of the evaluation-set variant and "
               "the loop study: see their sections and docs/results.md)"
               if len(within) == 2 and all(within.values()) else
               "not within on both tables: the rule keeps MiniLM the default and ships the static encoder as an option"
               if len(within) == 2 else "only one table measured: no verdict")
    lines += ["", f"Verdict for `{DEFAULT}`: {verdict}.", "",
              "### Every method (study means)", "",
              "| table | method | seeds | static | MiniLM | diff (SE) |", "|---|---|---|---|---|---|"]
    for r in study.itertuples(index=False):
        lines.append(f"| {r.dataset} | {r.method} | {r.seeds} | {_cell(r)} |")
    lines += ["", "## By logger (mean over lambdas)", "",
              "| table | logger | method | seeds | static | MiniLM | diff (SE) |", "|---|---|---|---|---|---|---|"]
    for r in detail.itertuples(index=False):
        lines.append(f"| {r.dataset} | {r.logger} | {r.method} | {r.seeds} | {_cell(r)} |")
    if loop is not None:
        rows = loop_compare(*loop)
        lines += ["", "## Loop study (issue 33: causal and explore-naive arms)", "",
                  "Same stream as the committed MiniLM loop study (`benchmarks/results/loop/loop.csv`: the incumbent's "
                  "logging probabilities read MiniLM fp32 features); the arms' routers learn from and route on the "
                  "static features. Final test utility: the last round's router on the held-out prompts; mean "
                  "deployed utility: over the rounds, of what the arm served.", "",
                  "| table | arm | explore | measure | seeds | static | MiniLM | diff (SE) |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows.itertuples(index=False):
            lines.append(f"| {r.dataset} | {r.arm} | {r.explore:g} | {r.measure} | {r.seeds} | {_cell(r)} |")
    if meta.get("commands"):
        lines += ["", "## Commands", ""] + [f"- {c}" for c in meta["commands"]]
    if meta.get("not_measured"):
        lines += ["", f"Not measured here: {meta['not_measured']}"]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--static", nargs="+", default=[str(OUT_DIR / "paper_protocol_static.csv")],
                    help="records of static runs (several: merged, the later file's row wins)")
    ap.add_argument("--merged", default=str(OUT_DIR / "paper_protocol_static.csv"),
                    help="where the merged records go when several --static files are given")
    ap.add_argument("--minilm", default=str(results_dir("paper_protocol") / "paper_protocol.csv"))
    ap.add_argument("--meta", default=str(OUT_DIR / "paper_protocol_static_meta.json"),
                    help="JSON with machine, commands and not_measured, shown in the report (optional)")
    ap.add_argument("--out", default=str(OUT_DIR / "comparison.md"))
    ap.add_argument("--loop", nargs="*", default=sorted(str(p) for p in OUT_DIR.glob("loop_static*.csv")),
                    help="loop-study records of static runs (default: loop_static*.csv here), against --minilm-loop")
    ap.add_argument("--minilm-loop", default=str(results_dir("loop") / "loop.csv"))
    args = ap.parse_args()
    static = merge([pd.read_csv(p) for p in args.static])
    name = args.static[0]
    if len(args.static) > 1:
        static.to_csv(args.merged, index=False)
        name = args.merged
    meta = json.loads(Path(args.meta).read_text()) if Path(args.meta).exists() else {}
    loop = (pd.concat([pd.read_csv(p) for p in args.loop], ignore_index=True), pd.read_csv(args.minilm_loop)) \
        if args.loop else None
    lines = report(static, pd.read_csv(args.minilm), shown(name), meta, loop)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
