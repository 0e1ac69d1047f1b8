"""How much the loop's learner loses to partial feedback, whatever the logging.

The loop study's skyline learns every model's outcome on every streamed prompt; every other arm
learns one model's outcome per prompt. This script trains the direct method the loop's routers
start from (:class:`exploration_sim.Learner`: the pooled quality ridge and the token cost model)
on the same streamed prompts of each seed's stream, with

* ``full``: every model's outcome on every prompt (the skyline's data);
* ``uniform``: one uniformly drawn model per prompt, ``--draws`` independent draws per seed;

and scores its choice (explore 0) on the stream's test prompts. The gap between the two is what
partial feedback of this size costs the learner with the best-spread logs; the spread of the uniform
draws is how much one final-round figure moves with the logged draw alone.

Run from the repository root (embeddings from the cache, fp32)::

    python -m benchmarks.feedback_gap

Results: ``benchmarks/results/feedback_gap/feedback_gap.csv`` and ``feedback_gap.md``.
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

from .common import DATA_ROOT, LOOP_SETTINGS, load_priced_table, results_dir
from .exploration_sim import Learner


def run(ff, X, prices, lam, rounds, batch, seed, draws) -> list[dict]:
    stream = make_stream(ff, X, rounds=rounds, batch=batch, lam=lam, seed=seed, incumbent="cost-biased:3")
    U = ff.scores - lam * ff.costs
    K = len(ff.models)
    idx = stream.order[:rounds * batch]

    def score(rows, arms) -> float:
        chosen = Learner(ff, X, prices, rows, arms).utility(stream.test, lam).argmax(1)
        return float(U[stream.test, chosen].mean())

    full = score(np.repeat(idx, K), np.tile(np.arange(K), len(idx)))  # every model on every prompt
    out = [{"seed": seed, "feedback": "full", "draw": 0, "test_utility": full}]
    for j in range(draws):
        arms = np.random.default_rng([seed, 400, j]).integers(0, K, size=len(idx))
        out.append({"seed": seed, "feedback": "uniform", "draw": j, "test_utility": score(idx, arms)})
    out += [{"seed": seed, "feedback": "oracle", "draw": 0, "test_utility": float(U[stream.test].max(1).mean())},
            {"seed": seed, "feedback": "best single model", "draw": 0,
             "test_utility": float(U[stream.test].mean(0).max())}]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default=",".join(LOOP_SETTINGS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--data-root", default=str(DATA_ROOT))
    ap.add_argument("--out", type=Path, default=results_dir("feedback_gap"))
    args = ap.parse_args()
    start = time.perf_counter()
    rows = []
    encoder = TransformerEncoder(precision="fp32")
    for name in args.datasets.split(","):
        lam, rounds, batch = LOOP_SETTINGS[name]
        ff, X, prices = load_priced_table(name, args.data_root, encoder)
        for seed in (int(s) for s in args.seeds.split(",")):
            for r in run(ff, X, prices, lam, rounds, batch, seed, args.draws):
                rows.append({"dataset": name, "lambda": lam, "n_prompts": rounds * batch, **r})
            print(name, seed, flush=True)
    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "feedback_gap.csv", index=False)
    seconds = time.perf_counter() - start
    lines = ["# What partial feedback costs the loop's learner (issue 12)", "",
             f"Command: `python -m benchmarks.feedback_gap --datasets {args.datasets} --seeds {args.seeds} "
             f"--draws {args.draws}` ({seconds:.0f} s, CPU: {cpu_model()}). The direct method (pooled quality "
             "ridge, token cost model) on the streamed prompts of each seed's loop stream; test utility of its "
             "choice on the stream's test prompts. Means over seeds (and draws); *std* is over all seeds and draws.",
             "", "| dataset | prompts | feedback | test utility | std | min | max |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for (name, fb), g in df.groupby(["dataset", "feedback"], sort=False):
        v = g["test_utility"]
        std = f"{v.std(ddof=1):.3f}" if len(v) > 1 else ""
        lines.append(f"| {name} | {g['n_prompts'].iloc[0]} | {fb} | {v.mean():.4f} | {std} | {v.min():.3f} | "
                     f"{v.max():.3f} |")
    (args.out / "feedback_gap.md").write_text("\n".join(lines) + "\n")
    print((args.out / "feedback_gap.md").read_text())


if __name__ == "__main__":
    main()
