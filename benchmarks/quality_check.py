"""Router quality under strongly biased logs along the CLI's default path (issue 13, Quality).

For each logging policy and seed it does what

    causal-router simulate TABLE --policy P [--beta B] --seed S --out D
    causal-router train D/train.parquet --val D/val.parquet --lambdas L --prices PRICES --out D/routers
    causal-router evaluate D/routers --table D/test.parquet --lambdas L

do, with the same library calls in one process (no per-command start-up; the embeddings come through
the same cache and default encoder), and adds the uniform level: the same learners trained on
uniformly logged rows of the same size (same seed). Writes one CSV of records
``dataset, policy, seed, method, lambda, utility, train_seconds`` and prints per-lambda means with
standard errors over seeds against the best of naive, best-single, dr-regress and the logging policy.

    python benchmarks/quality_check.py --dataset routerbench_subset --policies cost-biased:3 --seeds 0,1,2
    python benchmarks/quality_check.py --dataset llmrouter_9models --lambdas 0,7400,37000
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from causal_router.benchmark import parse_policies
from causal_router.causal.nuisances import NuisanceConfig
from causal_router.data.loaders import load_full_feedback
from causal_router.data.matrices import FullFeedback
from causal_router.data.simulate import simulate
from causal_router.evaluation.metrics import evaluate_routers
from causal_router.features.embed import default_encoder, embed_texts
from causal_router.policy.routers import RandomRouter
from causal_router.policy.training import fit_routing_data, train_routerset
from causal_router.settings.prices import load_prices

BASELINES = ("naive", "best-single", "dr-regress", "logging-policy")
DEFAULTS = ("rm-softmax", "rm-interval")
METHODS = "best-single,naive,dr-regress,rm-softmax,rm-interval"
LAMBDAS = {"routerbench_subset": "0,100,500", "llmrouter_9models": "0,7400,37000"}


def run_one(ff, X, pos, policy, strength, seed, lambdas, methods, prices, params):
    kw = {"beta": strength} if policy == "cost-biased" else {"kappa": strength} if policy == "previous-router" else {}
    sim = simulate(ff, X, policy, seed=seed, **{k: v for k, v in kw.items() if v is not None})
    rows = lambda df: np.array([pos[p] for p in df["prompt_id"].astype(str)])  # noqa: E731
    tr, va = rows(sim.train), rows(sim.val)
    start = time.perf_counter()
    data, meta = fit_routing_data(sim.train, X[tr], sim.val, X[va], prices=prices, nuisances=NuisanceConfig())
    rs = train_routerset(data, lambdas, methods, meta=meta, params=params)
    seconds = time.perf_counter() - start
    test = FullFeedback.from_frame(sim.test).select_models(rs.models)
    routers = {"random": RandomRouter.for_models(len(rs.models)), **rs.routers}
    recs = evaluate_routers(routers, test, X[np.array([pos[p] for p in test.prompt_ids])], lambdas, test.input_tokens)
    for r in recs:
        r.update(policy=f"{policy}" + (f":{strength:g}" if strength is not None else ""), seed=seed,
                 train_seconds=seconds)
    heads = {m: [str(f) for f in getattr(rs.routers[m], "fallback_", [])] for m in DEFAULTS if m in rs.routers}
    if "rm-softmax" in rs.routers:  # the lower-bound evidence per head: {candidate: (estimate, se)}
        heads["bounds"] = getattr(rs.routers["rm-softmax"], "selection_", [])
    return recs, heads, rs.meta["train_seconds"]


def report(df: pd.DataFrame) -> str:
    """Per lambda: mean ± standard error over seeds; the best baseline is the best of the baselines'
    means (issue 13's definition); the uniform level is rm-softmax's mean on uniform logs."""
    lines = []
    uni = df[df.policy == "uniform"]
    u = uni[uni.method == "rm-softmax"].groupby("seed").utility.mean().mean() if len(uni) else np.nan
    for (dataset, policy), g in df[df.policy != "uniform"].groupby(["dataset", "policy"], sort=False):
        piv = g.pivot_table(index=["seed", "lambda"], columns="method", values="utility")
        means = piv.groupby(level="lambda").mean()
        best = means[[b for b in BASELINES if b in means]].max(axis=1)
        lines.append(f"== {dataset} {policy} ({piv.index.get_level_values('seed').nunique()} seeds)")
        for m in [*DEFAULTS, *BASELINES]:
            if m not in piv:
                continue
            cells = [f"{lam:g}: {v.mean():.3f}±{v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0:.3f}"
                     for lam, v in piv[m].groupby(level="lambda")]
            per_seed = piv[m].groupby(level="seed").mean()
            se = per_seed.std(ddof=1) / np.sqrt(len(per_seed)) if len(per_seed) > 1 else 0
            lines.append(f"  {m:<15} " + "  ".join(cells) + f"  | mean {per_seed.mean():.3f}±{se:.3f}")
        lines.append("  best baseline   " + "  ".join(f"{lam:g}: {v:.3f}" for lam, v in best.items())
                     + f"  | mean {best.mean():.3f}")
        if not np.isnan(u):
            lines.append(f"  uniform level (rm-softmax on uniform logs, same size) {u:.3f}; "
                         f"goal mean >= {best.mean() + max(0.0, u - best.mean()) / 2:.3f}")
        for m in DEFAULTS:
            if m in means:
                gap = means[m] - best
                lines.append(f"  {m} - best baseline: " + "  ".join(f"{lam:g}: {v:+.3f}" for lam, v in gap.items())
                             + f"  | mean {gap.mean():+.3f}"
                             + ("  [every lambda within 0.005]" if (gap >= -0.005).all() else "  [NOT within 0.005]"))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="routerbench_subset")
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--policies", default="cost-biased:3,previous-router")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--lambdas", default=None)
    ap.add_argument("--methods", default=METHODS)
    ap.add_argument("--no-uniform", action="store_true", help="skip the uniform level")
    ap.add_argument("--params", default=None, help="JSON {router: {param: value}}")
    ap.add_argument("--out", default=None, help="CSV (default benchmarks/results/quality_<dataset>.csv)")
    ap.add_argument("--report", nargs="+", default=None, help="only print the report of these CSVs")
    args = ap.parse_args()
    if args.report:
        print(report(pd.concat([pd.read_csv(f) for f in args.report], ignore_index=True)))
        return
    root = Path(args.data_root) / args.dataset
    ff = load_full_feedback(root / f"{args.dataset}.parquet")
    prices = load_prices(Path("configs/prices") / f"{args.dataset}.yaml")
    enc = default_encoder()
    X = embed_texts(list(ff.prompts), encoder=enc)
    pos = {p: i for i, p in enumerate(ff.prompt_ids)}
    lambdas = [float(x) for x in (args.lambdas or LAMBDAS[args.dataset]).split(",")]
    params = json.loads(args.params) if args.params else None
    policies = parse_policies(args.policies) + ([] if args.no_uniform else [("uniform", None)])
    recs, info = [], {}
    for policy, strength in policies:
        for seed in (int(s) for s in args.seeds.split(",")):
            r, heads, secs = run_one(ff, X, pos, policy, strength, seed, lambdas, args.methods.split(","), prices,
                                     params)
            recs += r
            info[f"{policy}:{strength}:{seed}"] = {"heads": heads, "train_seconds": secs}
            print(f"{policy}:{strength} seed {seed}: {r[0]['train_seconds']:.1f}s heads {heads}", flush=True)
    df = pd.DataFrame(recs)
    df.insert(0, "dataset", args.dataset)
    out = Path(args.out or f"benchmarks/results/quality_{args.dataset}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    df[["dataset", "policy", "seed", "method", "lambda", "utility", "train_seconds"]].to_csv(out, index=False)
    text = report(df)
    meta = {"command": " ".join(["python benchmarks/quality_check.py", *__import__("sys").argv[1:]]),
            "encoder": enc.key, "cpu": platform.processor() or platform.machine(), "heads": info}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1, default=str))
    out.with_suffix(".txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
