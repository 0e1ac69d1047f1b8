"""The whole benchmark study (issue: paper protocol): both shared tables, four logging policies,
three seeds, every router of the registry plus the logging policy, the oracle, the full-feedback
skyline and EconML's DRPolicyForest.

    python benchmarks/paper_protocol.py [--datasets routerbench_subset,llmrouter_9models] [--seeds 0,1,2]

Writes benchmarks/results/paper_protocol.csv (records) and paper_protocol_summary.csv (mean and
std over seeds), then renders docs/results.md with benchmarks/report.py. Needs ../shared/data and
the 'bench' extra (EconML). Embeddings come through the cache, pinned to fp32 (bf16 would make the
figures depend on the CPU); the records carry the precision and the CPU model as columns.
``--precision bf16`` gives the methods bf16 embeddings but the simulated logging policies the fp32
ones (they read the embeddings), so both runs judge the methods on the same logs
(``benchmarks/precision_check.py``).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import pandas as pd

from causal_router.benchmark import parse_policies, run_study, summarize
from causal_router.data.loaders import load_full_feedback
from causal_router.features.embed import embed_texts
from causal_router.features.encoder import TransformerEncoder
from causal_router.features.hardware import cpu_model

# lambda * (dearest model's mean cost) spans the same range on both tables: RouterBench's
# dearest (gpt-4) costs ~0.0050 USD per query, LLMRouter's (the 49-70B models) ~0.000068,
# so LLMRouter's grid is RouterBench's times 74.
GRIDS = {
    "routerbench_subset": [0, 50, 100, 200, 500, 1000],
    "llmrouter_9models": [0, 3700, 7400, 14800, 37000, 74000],
}
POLICIES = "uniform,cost-biased:1,cost-biased:3,previous-router"
#: The shared full-feedback tables beside a checkout (only benchmarks read them).
DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_table(name: str, data_root=DATA_ROOT, encoder=None):
    """A shared table and its prompts' embeddings through the cache: (FullFeedback, X (n_prompts, d));
    ``encoder`` defaults to the study's fp32 one."""
    ff = load_full_feedback(Path(data_root) / name / f"{name}.parquet")
    return ff, embed_texts(list(ff.prompts), encoder=encoder or TransformerEncoder(precision="fp32"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default=",".join(GRIDS))
    ap.add_argument("--policies", default=POLICIES)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                    help="embedding precision (the committed study is fp32; bf16 checks that the figures do not move)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = Path(args.out)
    frames = []
    encoder = TransformerEncoder(precision=args.precision)
    # the simulated logging policies read fp32 features whatever --precision says: the logs are the
    # data, so a bf16 run sees the same logs as the fp32 study and differs only in the methods' features
    world = TransformerEncoder(precision="fp32")
    meta = {"embedding_precision": encoder.resolved_precision, "cpu_model": cpu_model(),
            "world_precision": world.resolved_precision}
    for name in args.datasets.split(","):
        start = time.perf_counter()
        ff, X = load_table(name, args.data_root, encoder)
        X_world = X if world.key == encoder.key else embed_texts(list(ff.prompts), encoder=world)
        df = run_study(ff, X, parse_policies(args.policies), [int(s) for s in args.seeds.split(",")], GRIDS[name],
                       out / f"work_{name}", name, peers=True, meta=meta, X_world=X_world)
        frames.append(df)
        logging.info("%s: %.0f s", name, time.perf_counter() - start)
    records = pd.concat(frames, ignore_index=True)
    suffix = "" if args.datasets == ",".join(GRIDS) else "_" + args.datasets.replace(",", "_")
    records.to_csv(out / f"paper_protocol{suffix}.csv", index=False)
    summarize(records).to_csv(out / f"paper_protocol{suffix}_summary.csv", index=False)


if __name__ == "__main__":
    main()
