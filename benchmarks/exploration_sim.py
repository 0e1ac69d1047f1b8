"""Which exploration lets a retrained router learn fastest? A light simulation of the loop.

The loop study (``loop_study.py``) runs the real service, decision log, ingest, cross-fitting and
gate, so it affords 3 seeds, and the final test utility of one seed jumps by 0.05-0.1 with the
policy a router settles on. This simulation keeps only what exploration changes, so that 10 seeds
separate the strategies:

* the stream, the round-0 incumbent (cost-biased beta=3) and the test prompts of ``make_stream``;
* the learner is the direct method the loop's routers start from (the pooled quality ridge and the
  token cost model, as the cross-fitter fits them), retrained after each round on every row logged
  so far except the newest 20% of each round (the loop's gate holdout);
* each round is routed by the project's :class:`~causal_router.policy.exploration.ExplorationPolicy`
  with the floor ``explore / (2 (K - 1))`` (as in the loop), the strategy under test, and the
  learner's :class:`~causal_router.policy.posterior.ArmPosterior` for ``thompson``.

Strategies: ``greedy`` (explore 0), ``spread`` (the exploration before Thompson: exactly ``explore``,
towards runners-up and thin logs), ``thompson@S`` (posterior scale S). Records per dataset, seed,
strategy and explore rate: the final router's test utility (explore 0) and the mean realised utility
over rounds 1.. (exploration paid for), and the mean share of traffic sent off the router's choice.

Run from the repository root (embeddings from the cache, fp32)::

    python -m benchmarks.exploration_sim --seeds 0,1,2,3,4,5,6,7,8,9

Results: ``benchmarks/results/exploration_sim/exploration_sim.csv`` and ``exploration_sim.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from causal_router.features.encoder import TransformerEncoder
from causal_router.features.hardware import cpu_model
from causal_router.loop.stream import make_stream
from causal_router.policy.exploration import ExplorationPolicy
from causal_router.policy.posterior import ArmPosterior

from .common import DATA_ROOT, LOOP_SETTINGS, load_priced_table, results_dir
from .loop_arms import fit_outcome_models

HOLDOUT = 0.2  # newest share of each round kept out of training (the loop's gate holdout)


class Learner:
    """The direct method on the logged rows (idx (m,) prompt indices, arms (m,))."""

    def __init__(self, ff, X, prices, idx, arms):
        self.quality, self.cost = fit_outcome_models(ff, X, idx, arms, prices)
        self.posterior = ArmPosterior.from_fit(self.quality, X[idx], arms, ff.scores[idx, arms], len(ff.models))
        self.ff, self.X = ff, X

    def utility(self, rows, lam):
        tok = None if self.ff.input_tokens is None else self.ff.input_tokens[rows]
        return self.quality.predict(self.X[rows]) - lam * self.cost.predict(self.X[rows], tok)


def run(ff, X, prices, lam, rounds, batch, seed, strategy, explore) -> dict:
    stream = make_stream(ff, X, rounds=rounds, batch=batch, lam=lam, seed=seed, incumbent="cost-biased:3")
    U = ff.scores - lam * ff.costs
    K = len(ff.models)
    idx0 = stream.round_prompts(0)
    arms0, _ = ExplorationPolicy.draw(stream.incumbent[idx0], np.random.default_rng([seed, 0]))
    keep = int(round((1 - HOLDOUT) * len(idx0)))
    idx, arms = idx0[:keep], arms0[:keep]
    kind, _, scale = strategy.partition("@")
    policy = ExplorationPolicy(explore, explore / (2 * (K - 1)),
                               strategy="thompson" if kind == "thompson" else "spread",
                               posterior_scale=float(scale or 1.0))
    rng = np.random.default_rng([seed, 1])
    realised, off = [], []
    for r in range(1, rounds):
        learner = Learner(ff, X, prices, idx, arms)
        rows = stream.round_prompts(r)
        mean = learner.utility(rows, lam)
        P = policy.probabilities(mean, explore, np.bincount(arms, minlength=K), None,
                                 (mean, learner.posterior.sd()))
        chosen, _ = ExplorationPolicy.draw(P, rng)
        realised.append(U[rows, chosen].mean())
        off.append(1.0 - P[np.arange(len(rows)), mean.argmax(1)].mean())
        keep = int(round((1 - HOLDOUT) * len(rows)))
        idx, arms = np.r_[idx, rows[:keep]], np.r_[arms, chosen[:keep]]
    final = Learner(ff, X, prices, idx, arms).utility(stream.test, lam).argmax(1)
    return {"test_utility": float(U[stream.test, final].mean()), "realised_utility": float(np.mean(realised)),
            "explored_share": float(np.mean(off))}


def write_markdown(df: pd.DataFrame, path: Path, command: str, seconds: float) -> None:
    lines = ["# Exploration strategies in a light simulation of the loop (issue 12)", "",
             f"Command: `{command}` ({seconds:.0f} s, CPU: {cpu_model()}). See `benchmarks/exploration_sim.py` "
             "for what is simulated. Means over seeds, standard errors in brackets; *paired* is the mean "
             "difference from `greedy` on the same seeds (its standard error in brackets).", ""]
    for name, d in df.groupby("dataset", sort=False):
        base = d[d.strategy == "greedy"].set_index("seed")
        lines += [f"## {name} (lambda {d['lambda'].iloc[0]:g}, {d.rounds.iloc[0]} rounds of {d.batch.iloc[0]}, "
                  f"seeds {len(base)})", "",
                  "| strategy | explore | final test utility | paired vs greedy | realised utility (rounds 1..) "
                  "| paired vs greedy | share explored |", "|---|---:|---:|---:|---:|---:|---:|"]
        for (strategy, e), g in d.groupby(["strategy", "explore"], sort=False):
            g = g.set_index("seed")
            dt = g.test_utility - base.test_utility.loc[g.index]
            dr = g.realised_utility - base.realised_utility.loc[g.index]

            def ms(x):
                return f"{x.mean():.4f} ({x.std(ddof=1) / np.sqrt(len(x)):.4f})"

            lines.append(f"| {strategy} | {e:g} | {ms(g.test_utility)} | {ms(dt)} | {ms(g.realised_utility)} "
                         f"| {ms(dr)} | {g.explored_share.mean():.3f} |")
        lines.append("")
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default=",".join(LOOP_SETTINGS))
    ap.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--strategies", default="spread,thompson@0.3,thompson@0.5,thompson@1")
    ap.add_argument("--explore", default="0.05,0.1")
    ap.add_argument("--data-root", default=str(DATA_ROOT))
    ap.add_argument("--out", type=Path, default=results_dir("exploration_sim"))
    args = ap.parse_args()
    start = time.perf_counter()
    rows = []
    encoder = TransformerEncoder(precision="fp32")
    for name in args.datasets.split(","):
        lam, rounds, batch = LOOP_SETTINGS[name]
        ff, X, prices = load_priced_table(name, args.data_root, encoder)
        settings = [("greedy", 0.0)] + [(s, float(e)) for s in args.strategies.split(",")
                                        for e in args.explore.split(",")]
        for seed in (int(s) for s in args.seeds.split(",")):
            for strategy, e in settings:
                rows.append({"dataset": name, "lambda": lam, "rounds": rounds, "batch": batch, "seed": seed,
                             "strategy": strategy, "explore": e,
                             **run(ff, X, prices, lam, rounds, batch, seed, strategy, e)})
            print(name, seed, flush=True)
    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "exploration_sim.csv", index=False)
    command = (f"python -m benchmarks.exploration_sim --datasets {args.datasets} --seeds {args.seeds} "
               f"--strategies {args.strategies} --explore {args.explore}")
    write_markdown(df, args.out / "exploration_sim.md", command, time.perf_counter() - start)
    print((args.out / "exploration_sim.md").read_text())


if __name__ == "__main__":
    main()
