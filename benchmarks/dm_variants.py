"""Direct-method variants under biased logs: does another outcome fit beat ``naive``?

``naive`` (the trusted default that the RM heads start from and fall back to) argmaxes the pooled
outcome model (:class:`~causal_router.causal.outcome.PooledRidge`: shared weights, per-model
deviations, per-model offsets pulled towards the common mean with ``arm_prior`` = 30 pseudo-rows).
Under cost-biased or previous-router logs the best models are rarely logged, so two choices of that
fit decide what ``naive`` makes of them. This script varies each on the study's simulated logs,
with the same cost model (the cross-fitter's) and the same test prompts:

* ``prior P``: the offset prior at P pseudo-rows instead of 30 (less shrinkage trusts a rarely
  logged model's few rows more);
* ``weighted C``: rows weighted by 1 / max(logged propensity, C), rescaled per model to its row
  count (covariate-shift correction: each model's fit then targets all prompts, not those where the
  logger picked it).

Run from the repository root (embeddings come from the cache, fp32)::

    python -m benchmarks.dm_variants --datasets routerbench_subset,llmrouter_9models --seeds 0,1,2

Results: ``benchmarks/results/dm_variants/dm_variants.csv`` (one row per dataset, logs, seed, variant, lambda)
and ``dm_variants.md`` (means over seeds and lambdas).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from causal_router.causal.outcome import PooledRidge
from causal_router.features.encoder import TransformerEncoder
from causal_router.policy.data import build_routing_data, log_arrays

from .common import DATA_ROOT, GRIDS, load_table, results_dir, worst_lambda_table
from .protocol import parse_policies, simulated_split

PRIORS = (1.0, 3.0, 10.0, 100.0)
WEIGHT_FLOORS = (0.02, 0.05)


def variants(X_tr, t, quality, propensity, n_arms) -> dict:
    """name -> fitted quality model."""
    out = {f"prior {p:g}": PooledRidge(arm_prior=p, require_all_arms=False).fit(X_tr, t, quality, n_arms=n_arms)
           for p in PRIORS}
    counts = np.bincount(t, minlength=n_arms)
    for floor in WEIGHT_FLOORS:
        w = 1.0 / np.maximum(propensity, floor)
        w *= counts[t] / np.bincount(t, weights=w, minlength=n_arms)[t]  # each model keeps its row count
        out[f"weighted {floor:g}"] = PooledRidge(require_all_arms=False).fit(X_tr, t, quality, n_arms=n_arms,
                                                                             sample_weight=w)
    return out


def run(name: str, ff, X, policy: str, seed: int) -> list[dict]:
    sim, tr, va, test, te = simulated_split(ff, X, *parse_policies(policy)[0], seed)
    models = list(ff.models)
    data = build_routing_data(sim.train, X[tr], sim.val, X[va], models, random_state=seed)
    cf = data.crossfitter
    cost = cf.cost_model_.predict(X[te], test.input_tokens)
    arr = log_arrays(sim.train, models)
    quality = {"naive": cf.quality_model_.predict(X[te], test.input_tokens)}
    quality.update({k: m.predict(X[te]) for k, m in
                    variants(X[tr], arr["treatment"], arr["quality"], arr["propensity"], len(models)).items()})
    utility = test.scores[None] - np.asarray(GRIDS[name], dtype=float)[:, None, None] * test.costs[None]
    rows = []
    for method, q in quality.items():
        for i, lam in enumerate(GRIDS[name]):
            chosen = np.argmax(q - lam * cost, axis=1)
            rows.append({"dataset": name, "policy": policy, "seed": seed, "method": method, "lambda": lam,
                         "utility": float(utility[i, np.arange(len(te)), chosen].mean())})
    return rows


def write_markdown(df: pd.DataFrame, path: Path, command: str) -> None:
    lines = ["# Direct-method variants under biased logs (issue 13)", "",
             f"Command: `{command}`. Mean test utility over the study's lambda grid and the seeds "
             f"({', '.join(map(str, sorted(df.seed.unique())))}); `naive` is the project's default "
             "(offset prior 30, unweighted). See `benchmarks/dm_variants.py` for the variants.", ""]
    for name, d in df.groupby("dataset"):
        table = d.groupby(["policy", "method"]).utility.mean().unstack()
        order = list(dict.fromkeys(d.method))  # naive first, then the variants as run
        table = table[order]
        worst = d.pivot_table(index=["policy", "seed", "lambda"], columns="method", values="utility")
        lines += [f"## {name}", "", "| logs | " + " | ".join(order) + " |", "|---|" + "---:|" * len(order)]
        for policy, row in table.iterrows():
            lines.append(f"| {policy} | " + " | ".join(f"{row[c]:.4f}" for c in order) + " |")
        lines += ["", "Worst lambda, variant minus naive (means over seeds):", "",
                  *worst_lambda_table(worst.groupby(["policy", "lambda"]).mean(), "naive", order[1:]), ""]
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="routerbench_subset,llmrouter_9models")
    ap.add_argument("--policies", default="cost-biased:1,cost-biased:3,previous-router")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--data-root", default=str(DATA_ROOT))
    ap.add_argument("--out", type=Path, default=results_dir("dm_variants"))
    args = ap.parse_args()
    rows = []
    encoder = TransformerEncoder(precision="fp32")
    for name in args.datasets.split(","):
        ff, X = load_table(name, args.data_root, encoder)
        for policy in args.policies.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                rows += run(name, ff, X, policy, seed)
                print(name, policy, seed, flush=True)
    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "dm_variants.csv", index=False)
    command = (f"python -m benchmarks.dm_variants --datasets {args.datasets} --policies {args.policies} "
               f"--seeds {args.seeds}")
    write_markdown(df, args.out / "dm_variants.md", command)
    print((args.out / "dm_variants.md").read_text())


if __name__ == "__main__":
    main()
