"""Core-issue quality table: RouterBench subset, cost-biased (beta=3) and previous-router logs, seeds 0-2.

    python benchmarks/core_quality.py [--policy cost-biased|previous-router] [--out benchmarks/results]

Needs ../shared/data/routerbench_subset (research-use data, not redistributed) and its
embeddings (computed through the cache on first use, ~2 minutes on 2 cores).
Writes ``core_quality_<policy>.csv`` (one record per seed, method and lambda).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from causal_router.benchmark import run_protocol
from causal_router.data.loaders import load_full_feedback
from causal_router.features.embed import embed_texts

LAMBDAS = [0, 50, 100, 200, 500, 1000]
STRENGTH = {"cost-biased": 3.0, "previous-router": None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--table", default="../shared/data/routerbench_subset/routerbench_subset.parquet")
    ap.add_argument("--policy", default="cost-biased", choices=sorted(STRENGTH))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    ff = load_full_feedback(args.table)
    X = embed_texts(list(ff.prompts))
    records = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        start = time.perf_counter()
        for r in run_protocol(ff, X, args.policy, strength=STRENGTH[args.policy], seed=seed, lambdas=LAMBDAS):
            records.append({"dataset": Path(args.table).stem, "policy": args.policy, "seed": seed, **r})
        print(f"seed {seed}: {time.perf_counter() - start:.0f}s", flush=True)
    df = pd.DataFrame(records)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / f"core_quality_{args.policy}.csv", index=False)
    table = df.pivot_table(index="method", columns="lambda", values="utility")
    table["mean"] = table.mean(axis=1)
    print(table.sort_values("mean").round(3).to_string())


if __name__ == "__main__":
    main()
