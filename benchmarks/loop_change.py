"""The loop under change: every arm of :mod:`benchmarks.loop_arms` on every scenario of
:mod:`causal_router.loop.scenarios`, round by round, on the loop study's streams.

    python -m benchmarks.loop_change --jobs 2                          # both tables, seeds 0-2, every scenario
    python -m benchmarks.loop_change --datasets routerbench_subset --seeds 0 --tag reduced --jobs 2

Settings as the loop study (:data:`benchmarks.common.LOOP_SETTINGS`, incumbent cost-biased beta=3), one
exploration rate (0.05) for the exploring arms. One process per (dataset, seed, scenario) (``--jobs``). In each,
``causal`` runs first: in ``degrade`` the model its champion sent the most traffic to in round 2 is the one
degraded for every arm of that stream.

Records: ``benchmarks/results/loop_change/loop_change.csv`` (``TAG.csv`` with ``--tag``), one row per
(dataset, seed, scenario, arm, round) with the loop records' columns plus

- ``realised_utility``: the round's mean realised utility (exploration included; ``deployed_utility``);
- ``changed_model``, ``changed_model_share``: the scenario's model and its share of the round's decisions;
- ``cumulative_regret_after_change``: summed per-query regret (against the per-prompt best model of the
  round's world) over rounds 3..r (empty before round 3; in ``none`` and the partial-feedback scenarios
  the same count from round 3);
- ``rounds_to_adapt``: ``new-model`` and ``price``, the first round r >= 3 whose share of decisions to the
  changed model reaches 80% of the skyline's share in that round; ``degrade``, whose share away from it
  (1 - share) reaches 80% of the skyline's; counted as r - 2 (1: the first round of the changed world).
  Empty where the arm never adapts or the scenario has no changed model.

Then ``python -m benchmarks.loop_change_report [--tag TAG]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from .common import DATA_ROOT, LOOP_SETTINGS, load_table_prices, result_stem, results_dir, table_path

ARMS = ("causal", "explore-naive", "greedy", "vw", "litellm-adaptive", "skyline")
EXPLORE = 0.05
#: How close to the skyline's share (to the changed model, or away from a degraded one) counts as adapted.
ADAPT_SHARE = 0.8
COLUMNS = ["dataset", "seed", "scenario", "arm", "explore", "round", "lam", "n_logged", "test_utility",
           "realised_utility", "changed_model", "changed_model_share", "cumulative_regret",
           "cumulative_regret_after_change", "rounds_to_adapt", "promoted", "cost_weight"]


def partial(stem: str) -> Path:
    """Records so far of a running study (a crash keeps them)."""
    return Path(tempfile.gettempdir()) / f"loop_change_{stem}.partial.csv"


def run_job(name: str, data_root: str, seed: int, scenario: str, arms, cv: int, no_overlap: str | None = None,
            cold_share: float | None = None, outcome_rows: str | None = None) -> tuple[list, dict]:
    """Every arm on one (dataset, seed, scenario); returns (records, what the job chose and took).
    ``no_overlap``, ``cold_share``, ``outcome_rows``: the gate's ``promote.no_overlap``, the service's
    ``serve.cold_start_share`` and the gate's ``promote.outcome_rows`` for this job (None: the defaults)."""
    from causal_router.features.embed import embed_texts
    from causal_router.features.encoder import TransformerEncoder
    from causal_router.loop import rounds as loop_rounds
    from causal_router.loop.rounds import loop_nuisances
    from causal_router.loop.scenarios import make_scenario
    from causal_router.loop.stream import make_stream
    from causal_router.validation.loaders import load_full_feedback

    from .loop_arms import run_arm

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} {seed} {scenario} %(message)s")
    for noisy in ("causal_router.policy.data", "httpx", "LiteLLM", "causal_router.loop.rounds"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if no_overlap is not None:
        loop_rounds.GATE["no_overlap"] = no_overlap
    if cold_share is not None:
        loop_rounds.SERVE["cold_start_share"] = cold_share
    if outcome_rows is not None:
        loop_rounds.GATE["outcome_rows"] = outcome_rows
    lam, rounds, batch = LOOP_SETTINGS[name]
    ff = load_full_feedback(table_path(name, data_root))
    X = embed_texts(list(ff.prompts), encoder=TransformerEncoder(precision="fp32"))
    prices = load_table_prices(name)
    stream = make_stream(ff, X, rounds=rounds, batch=batch, lam=lam, seed=seed, incumbent="cost-biased:3")
    nuis = loop_nuisances(seed, cv)
    records, seconds, changed = [], {}, None
    order = sorted(arms, key=lambda a: a != "causal")  # causal fixes the degraded model
    for arm in order:
        start = time.perf_counter()
        first = make_scenario(scenario, stream, changed)
        recs = run_arm(stream, arm, EXPLORE if arm in ("causal", "explore-naive", "vw") else 0.0, nuisances=nuis,
                       prices=prices, scenario=(lambda c=changed: make_scenario(scenario, stream, c))
                       if arm == "litellm-adaptive" else first)
        if arm == "causal" and scenario == "degrade":
            changed = first.changed
        for r in recs:
            r |= {"dataset": name, "scenario": scenario, "changed_model": first.changed or changed}
        records += recs
        seconds[arm] = time.perf_counter() - start
        logging.info("%s: final test %.4f (%.0fs)", arm, recs[-1]["test_utility"], seconds[arm])
    sc = make_scenario(scenario, stream, changed)
    return records, {"seconds": seconds, "changed_model": sc.changed or changed,
                     "weaker_model": sc.weaker, "lambda": lam, "rounds": rounds, "batch": batch}


def metrics(df: pd.DataFrame, change_round: int) -> pd.DataFrame:
    """Adds ``realised_utility``, ``cumulative_regret_after_change`` and ``rounds_to_adapt`` (module docstring)."""
    df = df.copy()
    df["realised_utility"] = df["deployed_utility"]
    key = ["dataset", "seed", "scenario", "arm"]
    before = (df[df["round"] == change_round - 1].set_index(key)["cumulative_regret"])
    base = df.set_index(key).index.map(before.to_dict().get)
    df["cumulative_regret_after_change"] = np.where(df["round"] >= change_round,
                                                    df["cumulative_regret"] - np.asarray(base, dtype=float), np.nan)
    sky = df[df["arm"] == "skyline"].set_index(["dataset", "seed", "scenario", "round"])["changed_model_share"]
    adapt = {}
    for k, g in df.groupby(key):
        dataset, seed, scenario, arm = k
        if scenario not in ("new-model", "price", "degrade") or g["changed_model_share"].isna().all():
            continue
        for _, row in g[g["round"] >= change_round].sort_values("round").iterrows():
            ref = sky.get((dataset, seed, scenario, row["round"]))
            if ref is None or pd.isna(ref):
                break
            share = row["changed_model_share"]
            ok = (1 - share >= ADAPT_SHARE * (1 - ref)) if scenario == "degrade" else (share >= ADAPT_SHARE * ref)
            if ok:
                adapt[k] = int(row["round"] - change_round + 1)
                break
    df["rounds_to_adapt"] = [adapt.get(tuple(r)) for r in df[key].itertuples(index=False)]
    df["rounds_to_adapt"] = df["rounds_to_adapt"].astype("Int64")
    return df


def finish_partial(out: Path, stem: str, args, change_round: int) -> None:
    """The jobs a stopped run completed (every arm of each), as a run of their own, marked partial."""
    from causal_router.features.hardware import cpu_model

    raw = pd.read_csv(partial(stem))
    df = metrics(raw, change_round)
    for c in COLUMNS:
        if c not in df:
            df[c] = None
    df[COLUMNS].to_csv(out / f"{stem}.csv", index=False)
    jobs = raw.groupby(["dataset", "seed", "scenario"])["changed_model"].first()
    given = " ".join(a for a in sys.argv[1:] if a != "--finish-partial")
    meta = {"reduced": True, "partial": True, "tag": args.tag,
            "command": f"python -m benchmarks.loop_change {given} (stopped; the jobs it completed: --finish-partial)",
            "datasets": sorted(set(raw["dataset"])), "seeds": sorted(int(x) for x in set(raw["seed"])),
            "scenarios": sorted(set(raw["scenario"])), "arms": sorted(set(raw["arm"])), "explore": EXPLORE,
            "cv": args.cv, "jobs": args.jobs, "cpu_model": cpu_model(), "incumbent": "cost-biased:3",
            "change_round": change_round, "adapt_share": ADAPT_SHARE, "wall_seconds": float("nan"),
            "per_job": {f"{d}/{s}/{sc}": {"changed_model": None if pd.isna(m) else m, "weaker_model": None}
                        for (d, s, sc), m in jobs.items()}}
    (out / f"{stem}_meta.json").write_text(json.dumps(meta, indent=2))
    print(f"{stem}.csv: {len(df)} records of {len(jobs)} completed jobs (partial)")


def main() -> None:
    from causal_router.loop.scenarios import CHANGE_ROUND, SCENARIOS

    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default=",".join(LOOP_SETTINGS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--data-root", default=str(DATA_ROOT))
    ap.add_argument("--out", default=str(results_dir("loop_change")))
    ap.add_argument("--tag", default="", help="non-empty for a reduced run: TAG.csv, never loop_change.csv")
    ap.add_argument("--cv", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=1, help="(dataset, seed, scenario) jobs in parallel processes")
    ap.add_argument("--no-overlap", choices=("tie", "switch"), default=None,
                    help="the gate's promote.no_overlap (default: params.yaml's, tie); needs --tag")
    ap.add_argument("--cold-share", type=float, default=None,
                    help="serve.cold_start_share of the served loop (default: the service's, 0.05); needs --tag")
    ap.add_argument("--outcome-rows", choices=("holdout", "train+holdout"), default=None,
                    help="the gate's promote.outcome_rows (default: params.yaml's, holdout); needs --tag")
    ap.add_argument("--finish-partial", action="store_true",
                    help="write the records a stopped run finished (its partial file) as TAG.csv, marked partial")
    args = ap.parse_args()
    from causal_router.features.hardware import cpu_model

    names, seeds = args.datasets.split(","), [int(s) for s in args.seeds.split(",")]
    scenarios, arms = args.scenarios.split(","), [a for a in args.arms.split(",") if a]
    bad = sorted(set(scenarios) - set(SCENARIOS)) + sorted(set(arms) - set(ARMS))
    if bad:
        raise SystemExit(f"unknown scenario(s) or arm(s) {bad}; scenarios: {', '.join(SCENARIOS)}; "
                         f"arms: {', '.join(ARMS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = result_stem("loop_change", args.tag)
    if args.finish_partial:
        return finish_partial(out, stem, args, CHANGE_ROUND)
    if (args.no_overlap is not None or args.cold_share is not None or args.outcome_rows is not None) and not args.tag:
        raise SystemExit("--no-overlap, --cold-share and --outcome-rows need --tag (loop_change.csv is the defaults' "
                         "study)")
    jobs = [(n, args.data_root, s, sc, arms, args.cv, args.no_overlap, args.cold_share, args.outcome_rows)
            for n in names for s in seeds for sc in scenarios]
    start = time.perf_counter()
    results, done = [], {}
    pool = ProcessPoolExecutor(args.jobs) if args.jobs > 1 else None
    try:
        futures = [(j, pool.submit(run_job, *j) if pool else None) for j in jobs]
        for j, fut in futures:
            recs, info = fut.result() if pool else run_job(*j)
            results += recs
            done[f"{j[0]}/{j[2]}/{j[3]}"] = info
            pd.DataFrame(results).to_csv(partial(stem), index=False)
    finally:
        if pool:
            pool.shutdown()
    df = metrics(pd.DataFrame(results), CHANGE_ROUND)
    for c in COLUMNS:
        if c not in df:
            df[c] = None
    df[COLUMNS].to_csv(out / f"{stem}.csv", index=False)
    meta = {"reduced": bool(args.tag), "tag": args.tag, "command": "python -m benchmarks.loop_change "
            + " ".join(sys.argv[1:]), "datasets": names, "seeds": seeds, "scenarios": scenarios, "arms": arms,
            "explore": EXPLORE, "cv": args.cv, "no_overlap": args.no_overlap, "cold_share": args.cold_share,
            "outcome_rows": args.outcome_rows,
            "jobs": args.jobs, "cpu_model": cpu_model(),
            "incumbent": "cost-biased:3", "change_round": CHANGE_ROUND, "adapt_share": ADAPT_SHARE,
            "wall_seconds": time.perf_counter() - start, "per_job": done}
    (out / f"{stem}_meta.json").write_text(json.dumps(meta, indent=2))
    partial(stem).unlink(missing_ok=True)
    print(f"{stem}.csv: {len(df)} records in {meta['wall_seconds']:.0f}s")


if __name__ == "__main__":
    main()
