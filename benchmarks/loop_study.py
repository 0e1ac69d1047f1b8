"""The loop study: every arm of :mod:`benchmarks.loop_arms`, round by round, on the same streams and
seeds, plus the static uniform-logging reference (the mean over ``--uniform-draws`` uniform draws
per seed).

    python -m benchmarks.loop_study                      # the whole study (both tables, seeds 0-2)
    python -m benchmarks.loop_study --datasets routerbench_subset --seeds 0 --explore 0.05 --tag reduced

Settings: RouterBench at lambda 100 in 8 rounds of 300, LLMRouter at lambda 7400 in 9 rounds of
500, incumbent cost-biased beta=3, explore 0.02/0.05/0.1 for the exploring arms. The study calls
the round stages directly (the CLI runs them as the loop flow, with the registry); each arm trains
only the router it deploys. One process per dataset (``--jobs 2`` runs both at once). Records go to
``benchmarks/results/loop/loop.csv`` (``TAG.csv`` with ``--tag``: a reduced run), the reference levels
and the run's settings to ``loop_meta.json`` (``TAG_meta.json``); then ``python -m benchmarks.loop_report
[--tag TAG]``.
Embeddings come through the cache (fp32, as the paper protocol).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from .common import DATA_ROOT, LOOP_SETTINGS, load_table_prices, result_stem, results_dir, table_path

EXPLORE = (0.02, 0.05, 0.1)
#: Arms and whether they run once per exploration rate.
ARMS = {"causal": True, "explore-naive": True, "vw": True, "greedy": False, "incumbent": False, "skyline": False}


def partial(stem: str, name: str) -> Path:
    """Records so far of a running study (a crash keeps them)."""
    return Path(tempfile.gettempdir()) / f"loop_study_{stem}_{name}.partial.csv"


def run_dataset(name: str, data_root: str, seeds, explores, arms, out: str, cv: int, stem: str = "loop",
                uniform_draws: int = 10, encoder: str | None = None) -> tuple[list, dict]:
    """One table's arms. ``encoder`` (e.g. ``static``): the arms' routers learn from and route on that
    encoder's features, while the incumbent's logging probabilities still come from MiniLM fp32's, so the
    stream (order, test prompts, round-0 logs' policy) equals the MiniLM study's."""
    import dataclasses

    from causal_router.features.embed import embed_texts
    from causal_router.features.encoder import TransformerEncoder
    from causal_router.loop.rounds import loop_nuisances
    from causal_router.loop.stream import make_stream
    from causal_router.validation.loaders import load_full_feedback

    from .loop_arms import run_arm, uniform_reference

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(message)s")
    for noisy in ("causal_router.policy.data", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    lam, rounds, batch = LOOP_SETTINGS[name]
    ff = load_full_feedback(table_path(name, data_root))
    X = embed_texts(list(ff.prompts), encoder=TransformerEncoder(precision="fp32"))
    X_arms = None
    if encoder:
        from causal_router.features.encoders import resolve_encoder

        X_arms = embed_texts(list(ff.prompts), encoder=resolve_encoder(encoder))
    prices = load_table_prices(name)
    records, refs, seconds = [], {}, {}
    for seed in seeds:
        stream = make_stream(ff, X, rounds=rounds, batch=batch, lam=lam, seed=seed, incumbent="cost-biased:3")
        if X_arms is not None:
            stream = dataclasses.replace(stream, X=X_arms)
        nuis = loop_nuisances(seed, cv)
        for arm in arms:
            for e in (explores if ARMS[arm] else [0.0]):
                start = time.perf_counter()
                recs = run_arm(stream, arm, e, nuisances=nuis, prices=prices)
                seconds[f"{seed}/{arm}/{e:g}"] = time.perf_counter() - start
                for r in recs:
                    r["dataset"] = name
                records += recs
                logging.info("seed %d %s explore %g: final test %.4f (%.0fs)", seed, arm, e, recs[-1]["test_utility"],
                             seconds[f"{seed}/{arm}/{e:g}"])
                pd.DataFrame(records).to_csv(partial(stem, name), index=False)
        start = time.perf_counter()
        draws = uniform_reference(stream, rounds * batch, nuis, prices, draws=uniform_draws)
        refs[str(seed)] = {"uniform_reference": float(sum(draws) / len(draws)), "uniform_draws": draws,
                           "oracle": float(stream.utility[stream.test].max(1).mean()), "n": rounds * batch}
        seconds[f"{seed}/uniform-reference"] = time.perf_counter() - start
    return records, {"lambda": lam, "rounds": rounds, "batch": batch, "references": refs, "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default=",".join(LOOP_SETTINGS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--explore", default=",".join(map(str, EXPLORE)))
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--data-root", default=str(DATA_ROOT))
    ap.add_argument("--out", default=str(results_dir("loop")))
    ap.add_argument("--tag", default="", help="non-empty for a reduced run: TAG.csv, never loop.csv")
    ap.add_argument("--cv", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=1, help="datasets run in parallel processes")
    ap.add_argument("--uniform-draws", type=int, default=10,
                    help="uniform logging draws per seed averaged into the uniform-logging level")
    ap.add_argument("--encoder", default=None,
                    help="the arms' features (static or static:DIMS; needs --tag); the incumbent logger still reads "
                    "MiniLM fp32 features, so the stream equals the committed study's")
    args = ap.parse_args()
    if args.encoder and not args.tag:
        ap.error("--encoder needs --tag (loop.csv is the MiniLM study)")
    from causal_router.features.hardware import cpu_model

    seeds = [int(s) for s in args.seeds.split(",")]
    explores = [float(x) for x in args.explore.split(",")]
    arms = [a for a in args.arms.split(",") if a]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        raise SystemExit(f"unknown arm(s) {unknown}; arms: {', '.join(ARMS)}")
    names = args.datasets.split(",")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    stem = result_stem("loop", args.tag)
    jobs = [(n, args.data_root, seeds, explores, arms, str(out), args.cv, stem, args.uniform_draws, args.encoder)
            for n in names]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(run_dataset, *zip(*jobs)))
    else:
        results = [run_dataset(*j) for j in jobs]
    from causal_router.loop.rounds import RECORD_COLUMNS

    cols = list(RECORD_COLUMNS)
    pd.DataFrame([r for recs, _ in results for r in recs], columns=cols).to_csv(out / f"{stem}.csv", index=False)
    meta = {"reduced": bool(args.tag), "tag": args.tag, "datasets": names, "seeds": seeds, "explore": explores,
            "arms": arms, "cv": args.cv, "jobs": args.jobs, "uniform_draws": args.uniform_draws,
            "cpu_model": cpu_model(),
            "embedding_precision": "fp32", "incumbent": "cost-biased:3", "encoder": args.encoder or "minilm",
            "wall_seconds": time.perf_counter() - start,
            "per_dataset": {n: m for n, (_, m) in zip(names, results)}}
    (out / f"{stem}_meta.json").write_text(json.dumps(meta, indent=2))
    for n in names:
        partial(stem, n).unlink(missing_ok=True)
    print(f"{stem}.csv: {sum(len(r) for r, _ in results)} records in {meta['wall_seconds']:.0f}s")


if __name__ == "__main__":
    main()
