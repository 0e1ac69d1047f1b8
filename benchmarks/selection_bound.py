"""How far can choosing among the RM head's candidates go? A hindsight bound.

Each RM head (``rm-softmax``; ``rm-interval`` inherits its choices) is chosen per lambda among the
trained network, the direct method (``dm``, the default), the logging policy's mode, DR
regress-and-compare and the best single model on the training logs, by the lower bound of the
improvement over ``dm`` on the validation logs. This script scores every candidate on the test
prompts and reports, per logging policy (means over lambdas and seeds):

* ``chosen``: the head the selection kept (the study's ``rm-softmax``);
* ``dm``: the direct method (the study's ``naive``);
* ``best candidate``: the best candidate per lambda and seed, chosen with hindsight on test;
* ``best candidate or any single model``: the same, with every single model added as a candidate.

When ``best candidate`` is below the quality goal's target, no selection rule among these candidates
can meet it: the candidates must get better. When it is above, the goal is a matter of evidence.

Run from the repository root (embeddings from the cache, fp32)::

    python -m benchmarks.selection_bound --datasets routerbench_subset \
        --policies cost-biased:1,cost-biased:3,previous-router
    python -m benchmarks.selection_bound --datasets llmrouter_9models --policies cost-biased:3,previous-router

Results: ``benchmarks/results/selection_bound/<dataset>.csv`` (one row per logs, seed, lambda) and
``selection_bound.md`` (every dataset's CSV found).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import threadpoolctl

from causal_router.features.encoder import TransformerEncoder
from causal_router.features.hardware import cpu_model
from causal_router.policy.catalog import get_router
from causal_router.policy.data import build_routing_data

from .common import DATA_ROOT, GRIDS, lambda_means, load_table, per_seed, results_dir, target_rows
from .protocol import parse_policies, simulated_split

RESULTS = results_dir("selection_bound")
COLUMNS = {"chosen": "chosen", "dm": "dm", "hindsight_no_single": "best candidate",
           "hindsight": "best candidate or any single model"}


def run(ff, X, lambdas, policy: str, seed: int) -> list[dict]:
    sim, tr, va, test, te = simulated_split(ff, X, *parse_policies(policy)[0], seed)
    data = build_routing_data(sim.train, X[tr], sim.val, X[va], list(ff.models), random_state=seed)
    router = get_router("rm-softmax").fit(data, lambdas)
    rows = []
    for k, lam in enumerate(router.lambdas_):
        U = test.scores - lam * test.costs
        kept = router.fallback_[k]
        value = {}
        for name in router.selection_[k]:  # every candidate, scored on test through the head itself
            router.fallback_[k] = None if name == "network" else (int(name) if name.isdigit() else name)
            chosen = router._head_scores(k, X[te], test.input_tokens).argmax(1)
            value[name] = float(U[np.arange(len(te)), chosen].mean())
        router.fallback_[k] = kept
        rows.append({"policy": policy, "seed": seed, "lambda": float(lam),
                     "chosen": value["network" if kept is None else str(kept)], "dm": value["dm"],
                     "hindsight_no_single": max(value.values()),
                     "hindsight": max(max(value.values()), float(U.mean(0).max()))})
    return rows


def write_markdown(path: Path) -> None:
    lines = ["# How far can selection among the RM head's candidates go? (issue 13)", "",
             "Written by `python -m benchmarks.selection_bound` (see its docstring for the commands). Mean test "
             "utility over the study's lambda grid and the seeds; `best candidate` picks, per lambda and seed, "
             "the best of the head's candidates (network, direct method, logging policy's mode, DR "
             "regress-and-compare, best single model on the training logs) with hindsight on the test prompts.", ""]
    study = pd.read_csv(results_dir("paper_protocol") / "paper_protocol.csv")
    lines += ["`goal target`: the quality goal's bar for `rm-softmax` from `paper_protocol.csv` (docs/results.md): "
              "halfway from the best baseline to the uniform level under beta=3 and previous-router logs, the best "
              "baseline under beta=1.", ""]
    for csv in sorted(RESULTS.glob("*.csv")):
        df = pd.read_csv(csv)
        name = csv.stem
        lam_mean = lambda_means(per_seed(study, name))
        seeds = ", ".join(map(str, sorted(df.seed.unique())))
        lines += [f"## {name} (seeds {seeds}; CPU: {df['cpu_model'].iloc[0]})", "",
                  "| logs | " + " | ".join(COLUMNS.values()) + " | goal target |",
                  "|---|" + "---:|" * (len(COLUMNS) + 1)]
        lines += [*target_rows(df, COLUMNS, lam_mean), ""]
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="routerbench_subset")
    ap.add_argument("--policies", default="cost-biased:1,cost-biased:3,previous-router")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--data-root", default=str(DATA_ROOT))
    args = ap.parse_args()
    # one BLAS thread, as the committed results were made (the two datasets ran side by side on 2 cores);
    # the network candidate's last digits move with the thread count
    threadpoolctl.threadpool_limits(1)
    encoder = TransformerEncoder(precision="fp32")
    for name in args.datasets.split(","):
        start = time.perf_counter()
        ff, X = load_table(name, args.data_root, encoder)
        rows = []
        for policy in args.policies.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                rows += run(ff, X, GRIDS[name], policy, seed)
                print(name, policy, seed, flush=True)
        df = pd.DataFrame(rows)
        df["cpu_model"] = cpu_model()
        RESULTS.mkdir(parents=True, exist_ok=True)
        df.to_csv(RESULTS / f"{name}.csv", index=False)
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    write_markdown(RESULTS / "selection_bound.md")
    print((RESULTS / "selection_bound.md").read_text())


if __name__ == "__main__":
    main()
