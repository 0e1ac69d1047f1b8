"""Ablations from the paper on RouterBench, cost-biased logs (beta=3), seeds 0-2:
RM-Softmax temperature, propensity clipping, logged against estimated propensities, and the
interval router trained on lambdas 0,200,...,1000 and evaluated in between against endpoint
routers trained at those lambdas.

    python -m benchmarks.ablations [--seeds 0,1,2]   ->  benchmarks/results/ablations/ablations.csv
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from causal_router.data.matrices import FullFeedback
from causal_router.data.simulate import simulate
from causal_router.evaluation.metrics import evaluate_routers
from causal_router.features.embed import embed_texts
from causal_router.policy.data import build_routing_data
from causal_router.policy.training import fit_routers
from causal_router.validation.loaders import load_full_feedback

from .common import results_dir, table_path
from .protocol import positions

LAMBDAS = [0, 50, 100, 200, 500, 1000]
INTERVAL_TRAIN = [0, 200, 400, 600, 800, 1000]
INTERVAL_EVAL = [100, 300, 500, 700, 900]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--table", default=str(table_path("routerbench_subset")))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default=str(results_dir("ablations") / "ablations.csv"))
    args = ap.parse_args()
    ff = load_full_feedback(args.table)
    X = embed_texts(list(ff.prompts))
    rows = []

    def record(ablation, setting, seed, routers, test, Xte, lams, seconds):
        for r in evaluate_routers(routers, test, Xte, lams, test.input_tokens):
            if r["method"] in routers:
                rows.append({"ablation": ablation, "setting": setting, "seed": seed, "train_seconds": seconds, **r})

    for seed in [int(s) for s in args.seeds.split(",")]:
        sim = simulate(ff, X, "cost-biased", beta=3.0, seed=seed)
        tr, va = positions(ff, sim.train["prompt_id"]), positions(ff, sim.val["prompt_id"])
        test = FullFeedback.from_frame(sim.test)
        Xte = X[positions(ff, test.prompt_ids)]

        def data(**kw):
            return build_routing_data(sim.train, X[tr], sim.val, X[va], list(ff.models), random_state=seed, **kw)

        base = data()
        for tau in (0.1, 1.0, 10.0, 100.0):
            t0 = time.perf_counter()
            routers, _ = fit_routers(base, LAMBDAS, ["rm-softmax"], {"rm-softmax": {"tau": tau}})
            record("tau", tau, seed, routers, test, Xte, LAMBDAS, time.perf_counter() - t0)
        for clip in (0.001, 0.01, 0.05, 0.1):
            t0 = time.perf_counter()
            routers, _ = fit_routers(data(clip=clip), LAMBDAS, ["rm-softmax", "dr-regress"])
            record("clip", clip, seed, routers, test, Xte, LAMBDAS, time.perf_counter() - t0)
        for propensity in ("fitted", "logged"):
            t0 = time.perf_counter()
            routers, _ = fit_routers(data(propensity=propensity), LAMBDAS, ["rm-softmax", "dr-regress"])
            record("propensity", propensity, seed, routers, test, Xte, LAMBDAS, time.perf_counter() - t0)
        t0 = time.perf_counter()
        interval, _ = fit_routers(base, INTERVAL_TRAIN, ["rm-softmax", "rm-interval"])
        record("interval", "interval (trained on 0..1000 step 200)", seed, {"rm-interval": interval["rm-interval"]},
               test, Xte, INTERVAL_EVAL, time.perf_counter() - t0)
        t0 = time.perf_counter()
        endpoints, _ = fit_routers(base, INTERVAL_EVAL, ["rm-softmax"])
        record("interval", "endpoints (trained at the evaluation lambdas)", seed, endpoints, test, Xte, INTERVAL_EVAL,
               time.perf_counter() - t0)
        pd.DataFrame(rows).to_csv(args.out, index=False)
        print(f"seed {seed} done", flush=True)
    df = pd.DataFrame(rows)
    print(df.groupby(["ablation", "setting", "method"])["utility"].mean().round(4).to_string())


if __name__ == "__main__":
    main()
