"""The budget loop study (issue 30, part 4): ``causal-router loop --budget B`` against fixed lambdas.

    python -m benchmarks.budget_study                    # both tables, seeds 0-2, B 0.2/0.4/0.6, both scenarios
    python -m benchmarks.budget_study --datasets routerbench_subset --seeds 0 --budgets 0.4 --tag probe

B is a fraction of the best model's mean cost per decision (the model with the highest mean quality on
the table; :mod:`causal_router.loop.budget`). The streams are the loop study's (``LOOP_SETTINGS``:
RouterBench 8 rounds of 300 at lambda 100, LLMRouter 9 rounds of 500 at lambda 7400, incumbent
cost-biased beta=3), explore 0.05. Arms:

- ``causal``: the product's loop under the budget: the interval router (grid 0, 0.5, 1, 2, 5, 10 x
  lambda), gated, each decision served at the service's BudgetController's lambda (cold start: the
  lambda calibrated on round 0);
- ``causal-fixed``: the same router, served throughout at the lambda calibrated offline on round 0;
- ``explore-naive``: the naive router (always deployed) with the same exploration and controller;
- ``cheapest``: the model with the lowest mean cost on the table, for every decision;
- ``hindsight``: the causal router at a fixed lambda chosen in hindsight: among the fixed-lambda runs
  tried (``causal-fixed``'s lambda and ``--hindsight-tries`` more, the first at the controller's median
  lambda after warm-up over the decisions it served without a fill (where the router spent the budget by
  lambda alone; all of them if none), the next by the secant in the controller's warped lambda coordinate
  on log spend), the one with the best final test utility whose spend after warm-up is within the budget
  (spend ratio <= 1 + SPEND_TOL); none: the lowest spend, ``hindsight_met`` False.

Scenarios: ``iid`` (the loop study's shuffled stream) and ``drift`` (:func:`drift_order`: the topic mix
shifts at the middle round).

Metrics over the budgeted decisions (rounds 1 on; round 0 is the incumbent's, before any router), in
stream order: ``spend_ratio`` = mean cost after the first ``WARMUP`` decisions / budget;
``worst_window_ratio`` = the mean cost / budget of the ``WINDOW``-decision window (after warm-up)
furthest from 1; ``final_test_utility`` = the final router's choices on the held-out test prompts at
the arm's last lambda, utility at the loop's lambda (``final_test_quality``, ``final_test_cost`` too).

Results: ``benchmarks/results/budget/budget.csv`` (``TAG.csv`` with ``--tag``), ``budget_meta.json``,
traces (every budgeted decision's lambda and cost) in ``traces/``; rows are appended to
``<out>/<stem>.partial.csv`` as each task ends (a crash keeps them). Then
``python -m benchmarks.budget_report [--tag TAG]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from .common import DATA_ROOT, LOOP_SETTINGS, load_table_prices, result_stem, results_dir

ARMS = ("causal", "causal-fixed", "explore-naive", "cheapest", "hindsight")
SCENARIOS = ("iid", "drift")
BUDGETS = (0.2, 0.4, 0.6)
EXPLORE = 0.05
WARMUP, WINDOW = 200, 500
SPEND_TOL = 0.02
#: Drift: k-means clusters of the prompts' embeddings, and the over-sampling of each half's own clusters.
DRIFT_CLUSTERS, DRIFT_SHARE = 8, 0.8
DRIFT_KEY = 400  # spawn key of the drift's draws
COLUMNS = ["dataset", "scenario", "seed", "arm", "budget_fraction", "budget_usd", "spend_ratio", "worst_window_ratio",
           "final_test_utility", "final_test_quality", "final_test_cost", "lam0", "lam_final", "lam_median",
           "lam_median_unfilled", "fill_mean", "calibration_met", "hindsight_met", "hindsight_tries", "decisions",
           "seconds"]


def spend_metrics(costs, budget: float) -> tuple[float, float]:
    """(spend ratio after ``WARMUP`` decisions, the ``WINDOW``-window ratio furthest from 1) of ``costs``
    in stream order."""
    c = np.asarray(costs, dtype=float)[WARMUP:]
    ratio = float(c.mean() / budget)
    if len(c) < WINDOW:
        return ratio, ratio
    w = np.convolve(c, np.ones(WINDOW) / WINDOW, mode="valid") / budget
    return ratio, float(w[np.argmax(np.abs(w - 1))])


def drift_order(stream, clusters: int = DRIFT_CLUSTERS, share: float = DRIFT_SHARE) -> np.ndarray:
    """A drifting stream order over the same streamed pool: the prompts' embeddings in ``clusters``
    k-means clusters, ranked by the mean cost of the table's best-quality answer to their prompts and
    split in two halves of the pool (group A: the cheaper-to-answer-best topics); before the middle
    round each decision comes from group A with probability ``share``, after it from group B with
    that probability (the other group once one runs out). Round 0 (the incumbent's) is in the first half."""
    from sklearn.cluster import KMeans

    ff, pool = stream.ff, np.sort(stream.order)
    labels = KMeans(clusters, n_init=4, random_state=stream.seed).fit_predict(stream.X[pool])
    best = ff.scores[pool].argmax(1)
    answer = ff.costs[pool, best]
    rank = sorted(range(clusters), key=lambda k: answer[labels == k].mean())
    in_a = np.zeros(len(pool), bool)
    for k in rank:  # the cheapest clusters into A until it holds half the pool
        if in_a.sum() >= len(pool) / 2:
            break
        in_a |= labels == k
    rng = np.random.default_rng(np.random.SeedSequence(stream.seed, spawn_key=(DRIFT_KEY,)))
    groups = [list(rng.permutation(pool[in_a])), list(rng.permutation(pool[~in_a]))]
    half = (stream.rounds // 2) * stream.batch
    order = []
    for pos in range(len(stream.order)):
        g = int(rng.random() >= share) if pos < half else int(rng.random() < share)
        g = g if groups[g] else 1 - g
        order.append(groups[g].pop())
    return np.array(order)


def _controlled(stream, arm, budget, control, lam=None, nuisances=None, prices=None, gain=None):
    """One retraining arm under ``budget`` (a :class:`causal_router.loop.budget.Budget` is built here):
    (records, Budget)."""
    from causal_router.loop.budget import Budget, budget_grid
    from causal_router.loop.rounds import run_rounds

    b = Budget(budget, budget_grid(stream.lam), control, lam, gain)
    method, gated = ("naive", False) if arm == "explore-naive" else ("rm-interval", True)
    recs = run_rounds(stream, EXPLORE, method=method, gated=gated, arm=arm, nuisances=nuisances, prices=prices,
                      budget=b)
    return recs, b


def _row(arm, recs, b, budget, seconds, trace_costs=None) -> dict:
    costs = [t["cost"] for t in b.trace] if trace_costs is None else trace_costs
    lams = [t["lam"] for t in b.trace][WARMUP:]
    own = [t["lam"] for t in b.trace[WARMUP:] if not t.get("fill")]  # where the router spent by lambda alone
    ratio, worst = spend_metrics(costs, budget)
    last = recs[-1]
    return {"arm": arm, "budget_usd": budget, "spend_ratio": ratio, "worst_window_ratio": worst,
            "final_test_utility": last["test_utility"], "final_test_quality": last["test_quality"],
            "final_test_cost": last["test_cost"], "lam0": b.lam0, "lam_final": last["lam"],
            "lam_median": float(np.median(lams)) if lams else None,
            "lam_median_unfilled": float(np.median(own)) if own else None,
            "fill_mean": float(np.mean([t.get("fill", 0.0) for t in b.trace][WARMUP:] or [0.0])),
            "calibration_met": b.met,
            "decisions": len(costs), "seconds": seconds}


def _secant(points, budget, to_u, to_lam) -> float:
    """The next lambda to try: the secant on (warped lambda, log spend) through the two tried points
    closest to the budget, aimed at spend = budget."""
    pts = sorted(points, key=lambda p: abs(np.log(p[1] / budget)))[:2]
    (l1, s1), (l2, s2) = pts
    u1, u2 = to_u(l1), to_u(l2)
    if u1 == u2 or s1 == s2:
        return to_lam(min(max(u1 + (0.05 if s1 > budget else -0.05), 0.0), 1.0))
    u = u1 + (np.log(budget) - np.log(s1)) * (u2 - u1) / (np.log(s2) - np.log(s1))
    return to_lam(min(max(u, 0.0), 1.0))


def run_task(name: str, scenario: str, seed: int, fraction: float, arms, data_root: str, out: str, cv: int,
             tries: int, gain: float | None = None) -> list[dict]:
    """Every arm on one (dataset, scenario, seed, budget); rows of :data:`COLUMNS`. Traces to ``out/traces``."""
    from causal_router.loop.budget import budget_usd
    from causal_router.loop.rounds import loop_nuisances
    from causal_router.loop.stream import make_stream
    from causal_router.serving.budget import BudgetController

    from .common import load_table

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} {scenario} s{seed} B{fraction} %(message)s")
    for noisy in ("causal_router.policy.data", "httpx", "causal_router.loop.rounds"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    lam, rounds, batch = LOOP_SETTINGS[name]
    ff, X = load_table(name, data_root)
    prices = load_table_prices(name)
    stream = make_stream(ff, X, rounds=rounds, batch=batch, lam=lam, seed=seed, incumbent="cost-biased:3")
    if scenario == "drift":
        stream.order = drift_order(stream)
    nuis = loop_nuisances(seed, cv)
    budget = budget_usd(ff, fraction)
    base = {"dataset": name, "scenario": scenario, "seed": seed, "budget_fraction": fraction}
    rows, traces, fixed_runs = [], {}, []
    for arm in [a for a in ARMS if a in arms and a != "hindsight"]:
        start = time.perf_counter()
        if arm == "cheapest":
            k = int(np.argmin(ff.costs.mean(0)))
            idx = stream.order[batch:]
            costs = list(ff.costs[idx, k])
            t = stream.test
            q, c = float(ff.scores[t, k].mean()), float(ff.costs[t, k].mean())
            ratio, worst = spend_metrics(costs, budget)
            rows.append({**base, "arm": arm, "budget_usd": budget, "spend_ratio": ratio, "worst_window_ratio": worst,
                         "final_test_utility": q - lam * c, "final_test_quality": q, "final_test_cost": c,
                         "decisions": len(costs), "seconds": time.perf_counter() - start})
            continue
        recs, b = _controlled(stream, arm, budget, "fixed" if arm == "causal-fixed" else "online", nuisances=nuis,
                              prices=prices, gain=gain)
        rows.append({**base, **_row(arm, recs, b, budget, time.perf_counter() - start)})
        traces[arm] = b.trace
        if arm == "causal-fixed":
            fixed_runs.append((b.lam0, recs, b, rows[-1]))
        logging.info("%s: spend %.3f worst %.3f test %.4f (%.0fs)", arm, rows[-1]["spend_ratio"],
                     rows[-1]["worst_window_ratio"], rows[-1]["final_test_utility"], rows[-1]["seconds"])
    if "hindsight" in arms and "causal" in traces and fixed_runs:
        start = time.perf_counter()
        causal = next(r for r in rows if r["arm"] == "causal")
        lo, hi = fixed_runs[0][2].grid[0], fixed_runs[0][2].grid[-1]
        warp = BudgetController(budget, (lo, hi))
        points = [(fixed_runs[0][0], fixed_runs[0][3]["spend_ratio"] * budget)]
        for j in range(tries):
            first = causal["lam_median_unfilled"]
            first = causal["lam_median"] if first is None else first
            lam_j = first if j == 0 else _secant(points, budget, warp.to_u, warp.to_lam)
            recs, b = _controlled(stream, "hindsight", budget, "fixed", lam_j, nuisances=nuis, prices=prices)
            row = _row("hindsight", recs, b, budget, 0.0)
            fixed_runs.append((lam_j, recs, b, row))
            points.append((lam_j, row["spend_ratio"] * budget))
            logging.info("hindsight try %d at lambda %.4g: spend %.3f test %.4f", j, lam_j, row["spend_ratio"],
                         row["final_test_utility"])
        meeting = [f for f in fixed_runs if f[3]["spend_ratio"] <= 1 + SPEND_TOL]
        met = bool(meeting)
        pick = max(meeting, key=lambda f: f[3]["final_test_utility"]) if met else \
            min(fixed_runs, key=lambda f: f[3]["spend_ratio"])
        row = {**pick[3], "arm": "hindsight", "lam0": pick[0], "lam_final": pick[0], "lam_median": pick[0],
               "hindsight_met": met, "hindsight_tries": len(fixed_runs), "seconds": time.perf_counter() - start}
        rows.append({**base, **row})
        traces["hindsight"] = pick[2].trace
    tdir = Path(out) / "traces"
    tdir.mkdir(parents=True, exist_ok=True)
    for arm, trace in traces.items():
        f = tdir / f"{name}_{scenario}_s{seed}_b{fraction:g}_{arm}.parquet"
        pd.DataFrame(trace).assign(arm=arm).to_parquet(f, index=False)
        f.with_suffix(".json").write_text(json.dumps({"budget_usd": budget, "lam": lam}))
    return rows


def _run_and_save(args) -> list[dict]:
    *task, partial = args
    rows = run_task(*task)
    df = pd.DataFrame(rows, columns=COLUMNS)
    df.to_csv(partial, mode="a", header=not Path(partial).exists(), index=False)
    return rows


def assemble(args) -> None:
    """The rows a stopped run appended to ``STEM.partial.csv`` as ``STEM.csv``, its meta marked reduced."""
    from causal_router.features.hardware import cpu_model

    out = Path(args.out)
    stem = result_stem("budget", args.tag)
    df = pd.read_csv(out / f"{stem}.partial.csv")
    df.to_csv(out / f"{stem}.csv", index=False)
    tasks = df[["dataset", "scenario", "seed", "budget_fraction"]].drop_duplicates()
    meta = {"reduced": True, "partial": True, "note": args.note,
            "command": "python -m benchmarks.budget_study --assemble (the stopped run's command: see the note)",
            "tasks_done": tasks.to_dict("records"), "explore": EXPLORE, "warmup": WARMUP, "window": WINDOW,
            "spend_tol": SPEND_TOL, "loop_settings": LOOP_SETTINGS,
            "drift": {"clusters": DRIFT_CLUSTERS, "share": DRIFT_SHARE}, "cpu_model": cpu_model(),
            "wall_seconds": args.wall_seconds}
    (out / f"{stem}_meta.json").write_text(json.dumps(meta, indent=2))
    print(f"{stem}.csv: {len(df)} rows of {len(tasks)} tasks (assembled from the partial rows)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=",".join(LOOP_SETTINGS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--drift-budgets", default="0.4", help="budgets of the drift scenario")
    ap.add_argument("--drift-arms", default="causal,causal-fixed,cheapest", help="arms of the drift scenario")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--hindsight-tries", type=int, default=2)
    ap.add_argument("--gain", type=float, default=None,
                    help="the controller's integral gain (default: the loop's, LOOP_GAIN)")
    ap.add_argument("--data-root", default=str(DATA_ROOT))
    ap.add_argument("--out", default=str(results_dir("budget")))
    ap.add_argument("--tag", default="", help="non-empty for a reduced run: TAG.csv, never budget.csv")
    ap.add_argument("--cv", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--assemble", action="store_true",
                    help="a run stopped early: its partial rows as STEM.csv, the meta marked reduced (--note: why)")
    ap.add_argument("--note", default="")
    ap.add_argument("--wall-seconds", type=float, default=None, help="with --assemble: the stopped run's wall time")
    args = ap.parse_args()
    if args.assemble:
        return assemble(args)
    from causal_router.features.hardware import cpu_model

    arms = [a for a in args.arms.split(",") if a]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        raise SystemExit(f"unknown arm(s) {unknown}; arms: {', '.join(ARMS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = result_stem("budget", args.tag)
    partial = out / f"{stem}.partial.csv"
    partial.unlink(missing_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    tasks = []
    for seed in seeds:
        for scenario in args.scenarios.split(","):
            budgets = args.budgets if scenario == "iid" else args.drift_budgets
            for name in args.datasets.split(","):
                for b in [float(x) for x in budgets.split(",")]:
                    task_arms = arms if scenario == "iid" else [a for a in args.drift_arms.split(",") if a]
                    tasks.append((name, scenario, seed, b, task_arms, args.data_root, str(out), args.cv,
                                  args.hindsight_tries, args.gain, str(partial)))
    # seed-major, the drift budgets first: a run stopped early has both tables and scenarios of its first seeds
    first = {float(x) for x in args.drift_budgets.split(",")}
    tasks.sort(key=lambda t: (seeds.index(t[2]), t[3] not in first))
    start = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(_run_and_save, tasks))
    else:
        results = [_run_and_save(t) for t in tasks]
    df = pd.DataFrame([r for rows in results for r in rows], columns=COLUMNS)
    df.to_csv(out / f"{stem}.csv", index=False)
    meta = {"reduced": bool(args.tag), "tag": args.tag, "command": "python -m benchmarks.budget_study " +
            " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("data_root", "out")),
            "datasets": args.datasets.split(","), "seeds": seeds, "budgets": args.budgets,
            "drift_budgets": args.drift_budgets, "drift_arms": args.drift_arms,
            "scenarios": args.scenarios.split(","), "arms": arms,
            "explore": EXPLORE, "warmup": WARMUP, "window": WINDOW, "spend_tol": SPEND_TOL,
            "hindsight_tries": args.hindsight_tries, "gain": args.gain, "cv": args.cv, "jobs": args.jobs,
            "loop_settings": LOOP_SETTINGS, "drift": {"clusters": DRIFT_CLUSTERS, "share": DRIFT_SHARE},
            "cpu_model": cpu_model(), "wall_seconds": time.perf_counter() - start}
    (out / f"{stem}_meta.json").write_text(json.dumps(meta, indent=2))
    partial.unlink(missing_ok=True)
    print(f"{stem}.csv: {len(df)} rows in {meta['wall_seconds']:.0f}s")


if __name__ == "__main__":
    main()
