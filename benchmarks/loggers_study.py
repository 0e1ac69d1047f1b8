"""The default router against many confounded loggers, with the tune/report split frozen before the
test (issue 32).

For every (table, logger, evaluation-set size M) it simulates logs with the protocol's split (60/20/20,
seeded by the logger's seed), draws train and val logs from the logger (:mod:`benchmarks.loggers`),
gives the first M prompts of a seeded permutation of the training prompts to the outcome models as an
evaluation set (as :mod:`benchmarks.eval_set` does), trains the default routers ONCE (``fit_routers``,
the trained set's defaults, RM-Classification left out: it is not served by default) and scores them on
the test prompts at every lambda of ``GRIDS``. Tables: the two shared tables and their two-model
sub-tables (``<name>:pair``, :func:`benchmarks.loggers.sub_table`).

Beside the utilities it stores, per cell and lambda, each candidate of the RM head's selection (the
trained network, dm, the logger's mode, the estimated logging probabilities, DR regress-and-compare, the
best single arm on the training logs) with its test utility and its validation-log estimates: the
improvement (estimate, se; :func:`causal_router.causal.selection.improvement`) over each anchor (dm, the
logger's mode, the logging probabilities, the best single arm, and zero: the candidate's own value).
Selection rules can then be replayed without retraining (:mod:`benchmarks.loggers_rules`).

Run from the repository root::

    python -m benchmarks.loggers_study --split tune --jobs 2      # cells cached under --cache
    python -m benchmarks.loggers_study --split report --jobs 2
    python -m benchmarks.loggers_study --aggregate                 # the CSV, parquet, markdown, meta

Results: ``benchmarks/results/loggers/loggers.csv`` (one row per dataset, logger, eval_set, lambda),
``candidates.parquet`` (the replay material), ``loggers.md`` and ``loggers_meta.json``.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from causal_router.causal.selection import improvement
from causal_router.data.logging_policies import DRAW_TRAIN_KEY, DRAW_VAL_KEY, rng
from causal_router.data.simulate import _draw, log_frame, split_prompts
from causal_router.evaluation.metrics import evaluate_routers, policy_metrics
from causal_router.features.hardware import cpu_model
from causal_router.policy.data import build_routing_data, scored_rows
from causal_router.policy.training import fit_routers

from . import loggers as L
from .common import DATA_ROOT, GRIDS, load_table, results_dir

RESULTS = results_dir("loggers")
METHODS = ["best-single", "naive", "dr-regress", "rm-softmax", "rm-interval"]
#: The served default router and the simple alternatives it is compared with.
DEFAULT = "rm-interval"
SIMPLE = ["naive", "best-single", "logging-policy", "dr-regress"]
TABLES = ("routerbench_subset", "llmrouter_9models", "routerbench_subset:pair", "llmrouter_9models:pair")
ANCHORS = ("dm", "logging", "logging-prob", "best-arm", "zero")


@lru_cache(maxsize=4)
def table(name: str, data_root: str):
    """(FullFeedback, X float (n, d)) of a shared table or its two-model sub-table (``name:pair``)."""
    base, _, kind = name.partition(":")
    ff, X = load_table(base, data_root)
    return (L.sub_table(ff) if kind == "pair" else ff), np.asarray(X, float)


def simulate_logs(ff, probs: np.ndarray, seed: int):
    """The protocol's split and draws under logging probabilities ``probs`` (n_prompts, K):
    (train log, val log, test FullFeedback carrying ``probs``, train, val, test positions)."""
    tr, va, te = split_prompts(ff, seed)
    train = log_frame(ff, tr, _draw(probs[tr], rng(seed, DRAW_TRAIN_KEY)), probs)
    val = log_frame(ff, va, _draw(probs[va], rng(seed, DRAW_VAL_KEY)), probs)
    test = replace(ff.subset(te), propensities=probs[te])
    return train, val, test, tr, va, te


def _candidates(arm: int) -> dict:
    """The RM head's candidates as (name -> its ``fallback_`` value): the network and ``_choose``'s fallbacks."""
    return {"network": None, "dm": "dm", "logging": "logging", "dr-regress": "dr-regress", "best-arm": arm}


def candidate_rows(router, data, test, X_test, tok_test) -> list[dict]:
    """Per lambda of the RM-Softmax router's grid and candidate: test utility and validation estimates."""
    ev, X_val, tok_val = data.val_evidence, data.X_val, data.val_input_tokens
    prop = router.nuisance_["propensity"]
    P_val, P_test = prop.predict_proba(X_val), prop.predict_proba(X_test)
    rows, saved = [], list(router.fallback_)
    try:
        for k, lam in enumerate(router.lambdas_):
            lam = float(lam)
            arm = int((data.utilities.quality.mean(0) - lam * data.utilities.cost.mean(0)).argmax())
            val_pol, test_util = {}, {}
            chosen = "network" if saved[k] is None else saved[k] if isinstance(saved[k], str) else "best-arm"
            for name, fb in _candidates(arm).items():
                router.fallback_[k] = fb
                val_pol[name] = router._head_scores(k, X_val, tok_val).argmax(1)
                test_util[name] = policy_metrics(router.predict_proba(X_test, lam, tok_test), test, lam)["utility"]
            val_pol["logging-prob"] = P_val
            test_util["logging-prob"] = policy_metrics(P_test, test, lam)["utility"]
            anchors = {"dm": val_pol["dm"], "logging": val_pol["logging"], "logging-prob": P_val,
                       "best-arm": val_pol["best-arm"], "zero": np.zeros_like(P_val)}
            for name, pol in val_pol.items():
                row = {"lam": lam, "candidate": name, "test_utility": test_util[name], "chosen": name == chosen}
                for a, base in anchors.items():
                    est = improvement(pol, base, ev, lam)
                    row[f"est_{a}"], row[f"se_{a}"] = est.value, est.se
                rows.append(row)
    finally:
        router.fallback_ = saved
    return rows


def run_cell(name: str, logger: str, M: int, data_root: str, cache: str) -> str:
    """One (table, logger, M) cell, cached as a pickle under ``cache``; returns its path."""
    path = Path(cache) / f"{name.replace(':', '+')}__{logger}__{M}.pkl"
    if path.exists():
        return str(path)
    import threadpoolctl

    threadpoolctl.threadpool_limits(1)
    ff, X = table(name, data_root)
    if logger == "uniform":
        probs, seed = np.full((ff.n_prompts, ff.n_models), 1.0 / ff.n_models), 0
    else:
        spec = L.BY_NAME[logger]
        probs, seed = L.probabilities(spec, ff, X), spec.seed
    start = time.perf_counter()
    train, val, test, tr, va, te = simulate_logs(ff, probs, seed)
    models = [str(m) for m in ff.models]
    order = np.random.default_rng(10_000 + seed).permutation(tr)
    scored = scored_rows(ff.subset(order[:M]), X[order[:M]], models) if M else None
    data = build_routing_data(train, X[tr], val, X[va], models, random_state=seed, scored=scored)
    nuisance_seconds = time.perf_counter() - start
    grid = GRIDS[name.partition(":")[0]]
    routers, seconds = fit_routers(data, grid, METHODS)
    records = evaluate_routers(routers, test, X[te], grid, test.input_tokens)
    cands = candidate_rows(routers["rm-softmax"], data, test, X[te], test.input_tokens)
    sel = [{"lam": float(lam), "fallback": str(f)} for lam, f in zip(routers["rm-softmax"].lambdas_,
                                                                     routers["rm-softmax"].fallback_)]
    out = {"dataset": name, "logger": logger, "eval_set": M, "records": records, "candidates": cands,
           "selection": sel, "nuisance_seconds": nuisance_seconds, "train_seconds": seconds,
           "cell_seconds": time.perf_counter() - start,
           "mean_max_propensity": float(probs[np.concatenate([tr, va])].max(1).mean())}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(out))
    tmp.replace(path)
    print(f"{name} {logger} M={M}: {out['cell_seconds']:.0f}s", flush=True)
    return str(path)


def cells(tables, names, sizes) -> list[tuple[str, str, int]]:
    """(table, logger, M) of the study, uniform references first."""
    return [(t, "uniform", m) for t in tables for m in sizes] + [(t, n, m) for n in names for t in tables
                                                                 for m in sizes]


# --------------------------------------------------------------------------- aggregation
def load_cells(caches: str, trained: str = "") -> list[dict]:
    """The cells of the comma-separated ``caches`` (a later cache's cell replaces an earlier one's), each
    tagged ``trained_with`` (the matching item of the comma-separated ``trained``: the rule it ran with)."""
    labels = trained.split(",") if trained else []
    out = {}
    for i, cache in enumerate(caches.split(",")):
        for p in sorted(Path(cache).glob("*.pkl")):
            c = pickle.loads(p.read_bytes())
            c["trained_with"] = labels[i] if i < len(labels) else ""
            c["finished"] = p.stat().st_mtime
            out[(c["dataset"], c["logger"], c["eval_set"])] = c
    return list(out.values())


def replayed(cand: pd.DataFrame, pessimism: float) -> pd.DataFrame:
    """Per (dataset, logger, eval_set, lam): the RM head's test utility under the dm-anchored rule at
    ``pessimism`` (the training path's :func:`~causal_router.causal.selection.select_policy`), replayed from
    the stored estimates: the candidate whose improvement over dm has the largest positive lower bound."""
    c = cand[cand.candidate.isin(["network", "dm", "logging", "dr-regress", "best-arm"])].copy()
    c["lb"] = np.where(c.candidate == "dm", 0.0, c["est_dm"] - pessimism * c["se_dm"])
    # ties resolve to the first candidate in _choose's order (network, dm, logging, dr-regress, best arm)
    order = {"network": 0, "dm": 1, "logging": 2, "dr-regress": 3, "best-arm": 4}
    c["order"] = c.candidate.map(order)
    c = c.sort_values(["dataset", "logger", "eval_set", "lam", "lb", "order"], ascending=[1, 1, 1, 1, 0, 1])
    best = c.groupby(["dataset", "logger", "eval_set", "lam"], sort=False).head(1)
    return best[["dataset", "logger", "eval_set", "lam", "candidate", "test_utility"]]


def frames(cells_: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-cell records with the uniform level, long candidate table)."""
    uniform = {(c["dataset"], c["eval_set"], r["lambda"]): r["utility"] for c in cells_ if c["logger"] == "uniform"
               for r in c["records"] if r["method"] == DEFAULT}
    uniform_mean = {}
    for (d, m, _), v in uniform.items():
        uniform_mean.setdefault((d, m), []).append(v)
    rows, cand = [], []
    for c in cells_:
        if c["logger"] == "uniform":
            continue
        spec = L.BY_NAME[c["logger"]]
        by = {(r["method"], r["lambda"]): r["utility"] for r in c["records"]}
        for lam in sorted({r["lambda"] for r in c["records"]}):
            simple = {s: by[(s, lam)] for s in SIMPLE}
            best = max(simple, key=simple.get)
            fitted = max((s for s in SIMPLE if s != "logging-policy"), key=simple.get)
            rows.append({"dataset": c["dataset"], "logger": c["logger"], "family": spec.family,
                         "split": L.SPLIT[c["logger"]], "eval_set": c["eval_set"], "lam": lam,
                         "default_utility": by[(DEFAULT, lam)], "rm_softmax_utility": by[("rm-softmax", lam)],
                         "best_simple_utility": simple[best], "best_simple_name": best,
                         "best_fitted_utility": simple[fitted], "best_fitted_name": fitted,
                         **{f"{s}_utility": v for s, v in simple.items()},
                         "oracle_utility": by[("oracle", lam)],
                         "uniform_level": uniform.get((c["dataset"], c["eval_set"], lam), np.nan),
                         "uniform_level_mean": float(np.mean(uniform_mean.get((c["dataset"], c["eval_set"]),
                                                                              [np.nan]))),
                         "train_seconds": c["nuisance_seconds"] + c["train_seconds"]["rm-softmax"]
                         + c["train_seconds"]["rm-interval"],
                         "mean_max_propensity": c["mean_max_propensity"]})
        for r in c["candidates"]:
            cand.append({"dataset": c["dataset"], "logger": c["logger"], "split": L.SPLIT[c["logger"]],
                         "eval_set": c["eval_set"], **r})
    return pd.DataFrame(rows), pd.DataFrame(cand)


def summary(df: pd.DataFrame, col: str = "default_utility", ref: str = "best_simple_utility") -> pd.DataFrame:
    """Per (dataset, eval_set, split): cells, share within 0.005 of the reference (default: the best
    simple alternative), worst cell, mean difference, and the moonshot's progress (the router's mean
    from the reference's towards the uniform level; NaN where the reference is above that level)."""
    d = df.assign(diff=df[col] - df[ref])
    g = d.groupby(["dataset", "eval_set", "split"], sort=False)
    out = g.agg(cells=("diff", "size"), share_ok=("diff", lambda x: float((x >= -0.005).mean())),
                worst=("diff", "min"), mean_diff=("diff", "mean"), router=(col, "mean"),
                best_simple=(ref, "mean"), uniform=("uniform_level", "mean")).reset_index()
    gap = out["uniform"] - out["best_simple"]
    out["moonshot"] = ((out["router"] - out["best_simple"]) / gap).where(gap > 0)
    out["goal"] = (out["share_ok"] >= 0.95) & (out["worst"] >= -0.02) & (out["mean_diff"] >= 0)
    return out


def summary_lines(s: pd.DataFrame) -> list[str]:
    lines = ["| table | M | split | cells | within 0.005 | worst | mean diff | router | best simple | uniform "
             "| moonshot | goal |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for _, r in s.iterrows():
        lines.append(f"| {r.dataset} | {r.eval_set} | {r.split} | {r.cells} | {r.share_ok:.1%} | {r.worst:+.4f} | "
                     f"{r.mean_diff:+.4f} | {r.router:.4f} | {r.best_simple:.4f} | {r.uniform:.4f} | "
                     + (f"{r.moonshot:+.2f}" if np.isfinite(r.moonshot) else "n/a")
                     + f" | {'met' if r.goal else 'not met'} |")
    return lines


def aggregate(cache: str, command: str, trained: str = "") -> None:
    cells_ = load_cells(cache, trained)
    df, cand = frames(cells_)
    by = {(c["dataset"], c["logger"], c["eval_set"]): c["trained_with"] for c in cells_}
    df["trained_with"] = [by[k] for k in zip(df.dataset, df.logger, df.eval_set)]
    for z in (1.0, 2.0):
        r = replayed(cand, z).rename(columns={"candidate": f"pick_z{z:g}", "test_utility": f"replay_z{z:g}"})
        df = df.merge(r, on=["dataset", "logger", "eval_set", "lam"], how="left")
    RESULTS.mkdir(parents=True, exist_ok=True)
    df["cpu_model"] = cpu_model()
    df.to_csv(RESULTS / "loggers.csv", index=False)
    cand.to_parquet(RESULTS / "candidates.parquet", index=False)
    s = summary(df)
    rb = df[df.dataset == "routerbench_subset"]
    lines = ["# The default router against confounded loggers (issue 32)", "",
             f"Default router: `{DEFAULT}` as `causal-router train` trains it. Simple alternatives: "
             f"{', '.join(SIMPLE)}; per cell the best of them on the cell's test prompts. *within 0.005*: share "
             "of (logger, lambda) cells where the router is at least the best simple alternative minus 0.005; "
             "*moonshot*: (router mean - best simple mean) / (uniform level - best simple mean), 0.5 is the "
             f"issue's moonshot. CPU: {cpu_model()}. Loggers and the frozen split: `benchmarks/loggers.py`.", "",
             "## Report half (the headline)", "",
             f"Trained with: {', '.join(sorted(set(df[df.split == 'report'].trained_with)))}. Loggers run: "
             f"{', '.join(sorted(df[df.split == 'report'].logger.unique()))}.", "",
             *summary_lines(s[s.split == "report"]), "",
             "## Tune half (used to choose the selection rule)", "",
             f"Trained with: {', '.join(sorted(set(df[df.split == 'tune'].trained_with)))}. Loggers run: "
             f"{', '.join(sorted(df[df.split == 'tune'].logger.unique()))}.", "",
             *summary_lines(s[s.split == "tune"]), "",
             "Against the best of naive, best-single and dr-regress only (the logging policy left out: an "
             "oracle-family logger reads the prompts' true outcomes, which no router of the prompt can):", "",
             *summary_lines(summary(df, ref="best_fitted_utility")), "",
             "The RM head replayed from the stored estimates (`replayed`), dm-anchored at pessimism 1 (the "
             "new default) and 2 (the old), every cell of both halves; where a cell was trained with the "
             "rule, its replay equals its RM-Softmax utility (checked: largest difference "
             f"{_replay_gap(df):.2g}).", "",
             *summary_lines(summary(df, "replay_z1").assign(split=lambda x: x["split"] + " replay z=1")), "",
             *summary_lines(summary(df, "replay_z2").assign(split=lambda x: x["split"] + " replay z=2"))[2:], "",
             "## Which simple alternative is best (cells, both halves)", "",
             df.groupby(["dataset", "best_simple_name"]).size().unstack(fill_value=0).to_markdown(), "",
             f"Training (nuisances + RM-Softmax + RM-Interval) on RouterBench, mean over cells: "
             f"{rb.groupby(['logger', 'eval_set']).train_seconds.first().mean():.1f} s (one process, one thread)."]
    (RESULTS / "loggers.md").write_text("\n".join(lines) + "\n")
    done = [c["finished"] for c in cells_]
    meta = {"cpu_model": cpu_model(), "command": command, "caches": cache, "trained_with": trained,
            "cells": int(len(cells_)), "cell_seconds_sum": float(sum(c["cell_seconds"] for c in cells_)),
            "wall_seconds_first_to_last_cell": float(max(done) - min(done)),
            "note": "two processes (--jobs 2) on 2 cores shared with another job; cells ran in two invocations "
                    "(tune before the selection fix, report after)",
            "loggers": sorted(df.logger.unique())}
    (RESULTS / "loggers_meta.json").write_text(json.dumps(meta, indent=1))
    print("\n".join(lines))


def _replay_gap(df: pd.DataFrame) -> float:
    """Largest |replay - RM-Softmax as trained| over cells trained with a rule the replay covers."""
    gaps = [(df.loc[df.trained_with == f"dm z={z:g}", f"replay_z{z:g}"]
             - df.loc[df.trained_with == f"dm z={z:g}", "rm_softmax_utility"]).abs().max() for z in (1.0, 2.0)]
    gaps = [g for g in gaps if np.isfinite(g)]
    return float(max(gaps)) if gaps else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default=",".join(TABLES))
    ap.add_argument("--loggers", default="", help="comma-separated logger names (default: all of --split)")
    ap.add_argument("--split", default="all", choices=["all", "tune", "report"])
    ap.add_argument("--sizes", default="0,50", help="evaluation-set sizes M")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cache", default="/tmp/loggers_cells", help="folder of the cells' pickles (resumable)")
    ap.add_argument("--data-root", default=str(DATA_ROOT))
    ap.add_argument("--aggregate", action="store_true", help="only write the results from the cached cells "
                    "(--cache may then name several folders, comma-separated)")
    ap.add_argument("--trained-with", default="", help="with --aggregate: the rule each cache's cells were "
                    "trained with, comma-separated (e.g. 'dm z=2,dm z=1')")
    args = ap.parse_args()
    command = "python -m benchmarks.loggers_study " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("aggregate", "data_root"))
    if args.aggregate:
        aggregate(args.cache, command, args.trained_with)
        return
    names = args.loggers.split(",") if args.loggers else [s.name for s in
                                                           L.loggers(None if args.split == "all" else args.split)]
    jobs = cells(args.datasets.split(","), names, [int(m) for m in args.sizes.split(",")])
    start = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            list(pool.map(run_cell, *zip(*[(t, n, m, args.data_root, args.cache) for t, n, m in jobs])))
    else:
        for t, n, m in jobs:
            run_cell(t, n, m, args.data_root, args.cache)
    seconds = time.perf_counter() - start
    Path(args.cache, "wall.json").write_text(json.dumps({"command": command, "seconds": seconds}))
    print(f"{len(jobs)} cells in {seconds:.0f}s")


if __name__ == "__main__":
    main()
