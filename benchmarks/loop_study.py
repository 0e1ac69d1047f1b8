"""The loop study (issue: the loop, measured): every arm of :mod:`causal_router.loop.arms`, round by
round, on the same streams and seeds, plus the static uniform-logging reference (the mean over
``--uniform-draws`` uniform draws per seed).

    python benchmarks/loop_study.py                      # the whole study (both tables, seeds 0-2)
    python benchmarks/loop_study.py --datasets routerbench_subset --seeds 0 --explore 0.05 --tag reduced

Settings: RouterBench at lambda 100 in 8 rounds of 300, LLMRouter at lambda 7400 in 9 rounds of
500, incumbent cost-biased beta=3, explore 0.02/0.05/0.1 for the exploring arms. The study calls
the round stages directly (the CLI runs them as the loop flow, with the registry); each arm trains
only the router it deploys. One process per dataset (``--jobs 2`` runs both at once). Records go to
``benchmarks/results/loop[_TAG].csv`` (a non-empty tag marks a reduced run), the reference levels
and the run's settings to ``loop[_TAG]_meta.json``; then ``python benchmarks/loop_report.py [--tag TAG]``.
Embeddings come through the cache (fp32, as the paper protocol).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

SETTINGS = {  # dataset: (lambda, rounds, batch)
    "routerbench_subset": (100.0, 8, 300),
    "llmrouter_9models": (7400.0, 9, 500),
}
EXPLORE = (0.02, 0.05, 0.1)
#: Arms and whether they run once per exploration rate.
ARMS = {"causal": True, "explore-naive": True, "vw": True, "greedy": False, "incumbent": False, "skyline": False}


def partial(stem: str, name: str) -> Path:
    """Records so far of a running study (a crash keeps them)."""
    return Path(tempfile.gettempdir()) / f"{stem}_{name}.partial.csv"


def run_dataset(name: str, data_root: str, seeds, explores, arms, out: str, cv: int, stem: str = "loop",
                uniform_draws: int = 10) -> tuple[list, dict]:
    from causal_router.data.loaders import load_full_feedback
    from causal_router.features.embed import embed_texts
    from causal_router.features.encoder import TransformerEncoder
    from causal_router.loop.arms import loop_nuisances, run_arm, uniform_reference
    from causal_router.loop.stream import make_stream
    from causal_router.settings.prices import load_prices

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(message)s")
    for noisy in ("causal_router.policy.data", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    lam, rounds, batch = SETTINGS[name]
    ff = load_full_feedback(Path(data_root) / name / f"{name}.parquet")
    X = embed_texts(list(ff.prompts), encoder=TransformerEncoder(precision="fp32"))
    prices = load_prices(Path("configs/prices") / f"{name}.yaml")
    records, refs, seconds = [], {}, {}
    for seed in seeds:
        stream = make_stream(ff, X, rounds=rounds, batch=batch, lam=lam, seed=seed, incumbent="cost-biased:3")
        nuis = loop_nuisances(seed, cv)
        for arm in arms:
            for e in (explores if ARMS[arm] else [0.0]):
                start = time.perf_counter()
                recs = run_arm(stream, arm, e, nuisances=nuis, prices=prices)
                seconds[f"{seed}/{arm}/{e:g}"] = time.perf_counter() - start
                for r in recs:
                    r["dataset"] = name
                records += recs
                logging.info("seed %d %s explore %g: final test %.4f (%.0fs)", seed, arm, e, recs[-1]["test_utility"],
                             seconds[f"{seed}/{arm}/{e:g}"])
                pd.DataFrame(records).to_csv(partial(stem, name), index=False)
        start = time.perf_counter()
        draws = uniform_reference(stream, rounds * batch, nuis, prices, draws=uniform_draws)
        refs[str(seed)] = {"uniform_reference": float(sum(draws) / len(draws)), "uniform_draws": draws,
                           "oracle": float(stream.utility[stream.test].max(1).mean()), "n": rounds * batch}
        seconds[f"{seed}/uniform-reference"] = time.perf_counter() - start
    return records, {"lambda": lam, "rounds": rounds, "batch": batch, "references": refs, "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default=",".join(SETTINGS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--explore", default=",".join(map(str, EXPLORE)))
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--tag", default="", help="non-empty for a reduced run: loop_TAG.csv, never loop.csv")
    ap.add_argument("--cv", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=1, help="datasets run in parallel processes")
    ap.add_argument("--uniform-draws", type=int, default=10,
                    help="uniform logging draws per seed averaged into the uniform-logging level")
    args = ap.parse_args()
    from causal_router.features.hardware import cpu_model

    seeds = [int(s) for s in args.seeds.split(",")]
    explores = [float(x) for x in args.explore.split(",")]
    arms = [a for a in args.arms.split(",") if a]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        raise SystemExit(f"unknown arm(s) {unknown}; arms: {', '.join(ARMS)}")
    names = args.datasets.split(",")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    stem = "loop" + (f"_{args.tag}" if args.tag else "")
    jobs = [(n, args.data_root, seeds, explores, arms, str(out), args.cv, stem, args.uniform_draws) for n in names]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(run_dataset, *zip(*jobs)))
    else:
        results = [run_dataset(*j) for j in jobs]
    cols = ["dataset", "seed", "arm", "explore", "round", "lam", "n_logged", "deployed_utility", "test_utility",
            "cumulative_regret", "promoted"]
    pd.DataFrame([r for recs, _ in results for r in recs], columns=cols).to_csv(out / f"{stem}.csv", index=False)
    meta = {"reduced": bool(args.tag), "tag": args.tag, "datasets": names, "seeds": seeds, "explore": explores,
            "arms": arms, "cv": args.cv, "jobs": args.jobs, "uniform_draws": args.uniform_draws,
            "cpu_model": cpu_model(),
            "embedding_precision": "fp32", "incumbent": "cost-biased:3",
            "wall_seconds": time.perf_counter() - start,
            "per_dataset": {n: m for n, (_, m) in zip(names, results)}}
    (out / f"{stem}_meta.json").write_text(json.dumps(meta, indent=2))
    for n in names:
        partial(stem, n).unlink(missing_ok=True)
    print(f"{stem}.csv: {sum(len(r) for r, _ in results)} records in {meta['wall_seconds']:.0f}s")


if __name__ == "__main__":
    main()
