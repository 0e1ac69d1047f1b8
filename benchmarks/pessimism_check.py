"""A reduced rerun of the paper protocol (issue 13's per-lambda guarantee) with the current selection
default, against the committed ``paper_protocol.csv`` (trained with the earlier default) on the same
seeds: does the new pessimism make the two public tables' study worse? (issue 32)

    python -m benchmarks.pessimism_check --datasets routerbench_subset \
        --policies cost-biased:3,previous-router --seeds 0

Writes ``benchmarks/results/loggers/pessimism_check.csv`` and ``.md``: per (dataset, logs, seed, lambda)
RM-Softmax now and as committed, and the best of the committed baselines (the guarantee's reference).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

import pandas as pd

from causal_router.causal.selection import DEFAULT_PESSIMISM
from causal_router.features.hardware import cpu_model

from .common import BASELINES, DATA_ROOT, GRIDS, load_table, results_dir
from .protocol import parse_policies, run_protocol

RESULTS = results_dir("loggers")


def run(name: str, policy: str, seed: int, data_root: str) -> list[dict]:
    import threadpoolctl

    threadpoolctl.threadpool_limits(1)
    ff, X = load_table(name, data_root)
    kind, strength = parse_policies(policy)[0]
    recs = run_protocol(ff, X, kind, strength=strength, seed=seed, lambdas=GRIDS[name], methods=["rm-softmax"],
                        skyline=False, dataset=name)
    return [{"dataset": name, "policy": kind, "requested_strength": strength, "seed": seed, "lambda": r["lambda"],
             "now": r["utility"]} for r in recs if r["method"] == "rm-softmax"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="routerbench_subset,llmrouter_9models")
    ap.add_argument("--policies", default="cost-biased:3,previous-router")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    jobs = [(d, p, int(s), str(DATA_ROOT)) for d in args.datasets.split(",") for p in args.policies.split(",")
            for s in args.seeds.split(",")]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = [r for part in pool.map(run, *zip(*jobs)) for r in part]
    seconds = time.perf_counter() - start
    now = pd.DataFrame(rows)
    old = pd.read_csv(results_dir("paper_protocol") / "paper_protocol.csv")
    key = ["dataset", "policy", "seed", "lambda"]
    old["requested_strength"] = old["requested_strength"].fillna(-1)
    now["requested_strength"] = now["requested_strength"].fillna(-1)
    key = key + ["requested_strength"]
    committed = old[old.method == "rm-softmax"][key + ["utility"]].rename(columns={"utility": "committed"})
    base = old[old.method.isin(BASELINES)].groupby(key).utility.max().rename("best_baseline").reset_index()
    df = now.merge(committed, on=key).merge(base, on=key)
    df["now_minus_best"] = df.now - df.best_baseline
    df["committed_minus_best"] = df.committed - df.best_baseline
    df["cpu_model"] = cpu_model()
    df.to_csv(RESULTS / "pessimism_check.csv", index=False)
    g = df.groupby(["dataset", "policy", "requested_strength"])
    summary = g.agg(now=("now", "mean"), committed=("committed", "mean"), worst_now=("now_minus_best", "min"),
                    worst_committed=("committed_minus_best", "min")).reset_index()
    lines = ["# The selection default against issue 13's study (issue 32)", "",
             f"`python -m benchmarks.pessimism_check --datasets {args.datasets} --policies {args.policies} "
             f"--seeds {args.seeds}` ({seconds:.0f} s, CPU: {cpu_model()}). RM-Softmax retrained with pessimism "
             f"{DEFAULT_PESSIMISM:g} (*now*) against the committed paper protocol (pessimism 2, *committed*) on the "
             "same logs; *worst*: the smallest difference over lambdas from the best committed baseline "
             f"({', '.join(BASELINES)}); means over lambdas and seeds.", "",
             summary.to_markdown(index=False, floatfmt="+.4f")]
    (RESULTS / "pessimism_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
