"""The whole benchmark study (the paper's protocol, :mod:`benchmarks.protocol`): both shared tables,
four logging policies, three seeds, every router of the registry plus the logging policy, the
oracle, the full-feedback skyline and EconML's DRPolicyForest.

    python -m benchmarks.paper_protocol [--datasets routerbench_subset,llmrouter_9models] [--seeds 0,1,2]

Writes benchmarks/results/paper_protocol/paper_protocol.csv (records) and paper_protocol_summary.csv
(mean and std over seeds); a run on some of the datasets writes ``<datasets>.csv`` and
``<datasets>_summary.csv`` there instead. ``python -m benchmarks.report`` then renders
docs/results.md. Needs the shared data (:data:`benchmarks.common.DATA_ROOT`) and the 'bench'
extra (EconML). Embeddings come through the cache, pinned to fp32 (bf16 would make the
figures depend on the CPU); the records carry the precision and the CPU model as columns.
``--precision bf16`` gives the methods bf16 embeddings but the simulated logging policies the fp32
ones (they read the embeddings), so both runs judge the methods on the same logs
(``python -m benchmarks.precision_check`` compares two runs).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import pandas as pd

from causal_router.features.embed import embed_texts
from causal_router.features.encoder import TransformerEncoder
from causal_router.features.encoders import resolve_encoder
from causal_router.features.hardware import cpu_model

from .common import DATA_ROOT, GRIDS, load_table, results_dir
from .protocol import parse_policies, run_study, summarize

POLICIES = "uniform,cost-biased:1,cost-biased:3,previous-router"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default=",".join(GRIDS))
    ap.add_argument("--policies", default=POLICIES)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--data-root", default=str(DATA_ROOT))
    ap.add_argument("--out", default=str(results_dir("paper_protocol")))
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                    help="embedding precision (the committed study is fp32; bf16 checks that the figures do not move)")
    ap.add_argument("--encoder", default=None,
                    help="the methods' features: static (or static:DIMS) for the static encoder; the simulated "
                    "logging policies still read MiniLM fp32 features, so the logs equal the committed study's")
    ap.add_argument("--no-peers", action="store_true", help="leave out EconML's DRPolicyForest")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = Path(args.out)
    frames = []
    encoder = resolve_encoder(args.encoder) if args.encoder else TransformerEncoder(precision=args.precision)
    # the simulated logging policies read fp32 features whatever --precision says: the logs are the
    # data, so a bf16 run sees the same logs as the fp32 study and differs only in the methods' features
    world = TransformerEncoder(precision="fp32")
    meta = {"embedding_precision": encoder.resolved_precision, "cpu_model": cpu_model(),
            "world_precision": world.resolved_precision, "encoder": encoder.key}
    for name in args.datasets.split(","):
        start = time.perf_counter()
        ff, X = load_table(name, args.data_root, encoder)
        X_world = X if world.key == encoder.key else embed_texts(list(ff.prompts), encoder=world)
        df = run_study(ff, X, parse_policies(args.policies), [int(s) for s in args.seeds.split(",")], GRIDS[name],
                       out / f"work_{name}", name, peers=not args.no_peers, meta=meta, X_world=X_world)
        frames.append(df)
        logging.info("%s: %.0f s", name, time.perf_counter() - start)
    records = pd.concat(frames, ignore_index=True)
    stem = "paper_protocol" if args.datasets == ",".join(GRIDS) else args.datasets.replace(",", "_")
    records.to_csv(out / f"{stem}.csv", index=False)
    summarize(records).to_csv(out / f"{stem}_summary.csv", index=False)


if __name__ == "__main__":
    main()
