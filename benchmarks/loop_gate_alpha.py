"""How strict the promotion gate should be in the loop: the ``causal`` arm
(:func:`causal_router.loop.rounds.run_rounds`) rerun with the gate's confidence level changed, nothing else.

    python -m benchmarks.loop_gate_alpha --datasets routerbench_subset --seeds 0,1,2 --alphas 0.05,0.5,1 \
        --challenger-shares 0
    python -m benchmarks.loop_gate_alpha --datasets routerbench_subset,llmrouter_9models --alphas 0.05,1 \
        --challenger-shares 1 --out benchmarks/results/loop_gate_alpha/canary.csv
    python -m benchmarks.loop_gate_alpha --datasets routerbench_subset,llmrouter_9models --alphas 0.05 \
        --margins 0.005,0.01,0.02 --out benchmarks/results/loop_gate_alpha/margin.csv

``--challenger-shares`` sets how much of the exploration goes to the rejected challenger's choice
(``serve.challenger_share``, 1 by default; 0 spreads it evenly over the other models).

The gate promotes iff the lower end of the two-sided (1 - alpha) interval of the paired DR difference
(challenger - champion) on the holdout is above ``-margin`` (``--margins``, ``promote.margin``; 0 by
default): alpha 0.05 is the project's default, alpha 1 the point estimate alone. Writes
``benchmarks/results/loop_gate_alpha/loop_gate_alpha.csv`` (one row per dataset, seed, alpha, margin and round: test
utility of the deployed router, realised utility, whether the gate promoted) and prints the
final-round means. Settings and embeddings as ``loop_study``.
"""

from __future__ import annotations

import argparse
import functools
import logging
import time

import pandas as pd

from .common import DATA_ROOT, LOOP_SETTINGS, load_table_prices, results_dir, table_path


def main() -> None:
    from causal_router.features.embed import embed_texts
    from causal_router.features.encoder import TransformerEncoder
    from causal_router.features.hardware import cpu_model
    from causal_router.loop import rounds
    from causal_router.loop.steps import gate, make_service
    from causal_router.loop.stream import make_stream
    from causal_router.validation.loaders import load_full_feedback

    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="routerbench_subset")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--alphas", default="0.05,0.5,1")
    ap.add_argument("--margins", default="0",
                    help="non-inferiority margins of the gate (promote.margin; 0: evidence of an improvement)")
    ap.add_argument("--explore", type=float, default=0.05)
    ap.add_argument("--challenger-shares", default="1",
                    help="shares of the exploration sent to the rejected challenger's choice (serve.challenger_share; "
                         "0: spread as without a challenger)")
    ap.add_argument("--data-root", default=str(DATA_ROOT))
    ap.add_argument("--out", default=str(results_dir("loop_gate_alpha") / "loop_gate_alpha.csv"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = []
    for name in args.datasets.split(","):
        lam, n_rounds, batch = LOOP_SETTINGS[name]
        ff = load_full_feedback(table_path(name, args.data_root))
        X = embed_texts(list(ff.prompts), encoder=TransformerEncoder(precision="fp32"))
        prices = load_table_prices(name)
        for seed in [int(s) for s in args.seeds.split(",")]:
            stream = make_stream(ff, X, rounds=n_rounds, batch=batch, lam=lam, seed=seed, incumbent="cost-biased:3")
            for share, alpha, margin in [(float(c), float(a), float(m)) for c in args.challenger_shares.split(",")
                                         for a in args.alphas.split(",") for m in args.margins.split(",")]:
                rounds.gate = functools.partial(gate, alpha=alpha, margin=margin)  # the arm's gate, at this setting
                rounds.make_service = functools.partial(make_service, challenger_share=share)
                start = time.perf_counter()
                try:
                    recs = rounds.run_rounds(stream, args.explore, nuisances=rounds.loop_nuisances(seed, 5),
                                             prices=prices)
                finally:
                    rounds.gate, rounds.make_service = gate, make_service
                for r in recs:
                    rows.append({"dataset": name, "seed": seed, "alpha": alpha, "margin": margin,
                                 "challenger_share": share,
                                 "explore": args.explore, "round": r["round"], "test_utility": r["test_utility"],
                                 "deployed_utility": r["deployed_utility"],
                                 "cumulative_regret": r["cumulative_regret"], "promoted": r["promoted"],
                                 "cpu_model": cpu_model(), "seconds": time.perf_counter() - start})
                print(f"{name} seed {seed} share {share:g} alpha {alpha:g} margin {margin:g}: "
                      f"final test {recs[-1]['test_utility']:.4f}", flush=True)
                pd.DataFrame(rows).to_csv(args.out, index=False)
    df = pd.DataFrame(rows)
    last = df[df["round"] == df.groupby("dataset")["round"].transform("max")]
    means = last.groupby(["dataset", "challenger_share", "alpha", "margin"])["test_utility"].agg(["mean", "sem"])
    print(means.round(4).to_string())


if __name__ == "__main__":
    main()
