"""How long one RouterBench training takes, phase by phase, for several source trees side by side (issue 32).

One training as ``causal-router train`` runs it by default: :func:`~causal_router.policy.training.fit_routing_data`
(5 cross-fitted folds and the refit of the propensity, quality and cost models, DR utilities for train and val)
then :func:`~causal_router.policy.training.train_routerset` with every default router, on the studies'
RouterBench grid (``GRIDS``). The logs are simulated from the shared RouterBench subset table with a fixed
logger (``--logger``, default ``cost-b3`` of :mod:`benchmarks.loggers`, the protocol's split seeded by it),
the features are the studies' fp32 MiniLM embeddings from the cache. Each source tree (``--src NAME=FOLDER``, a
folder holding ``causal_router``) runs in its own subprocess, the trees interleaved ``--rounds`` times; the
medians are reported with ratios to the first tree, beside a digest of every router's scores on the test
prompts (the same digest: the same routers).

    python -m benchmarks.train_speed --src base=/tmp/base/src --src new=src

Results: ``benchmarks/results/train_speed/train_speed[_TAG].{md,json}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .common import DATA_ROOT, GRIDS, ROOT, results_dir

TABLE = "routerbench_subset"


def measure(logger: str, methods: list[str] | None, jobs: int = 0) -> dict:
    """One tree's phase times and routers' digest (run in a subprocess whose ``causal_router`` is that tree's)."""
    from causal_router.policy.training import DEFAULT_METHODS, fit_routing_data, train_routerset

    from . import loggers as L
    from .loggers_study import simulate_logs, table

    ff, X = table(TABLE, str(DATA_ROOT))
    probs = L.probabilities(L.BY_NAME[logger], ff, X)
    train, val, test, tr, va, te = simulate_logs(ff, probs, L.BY_NAME[logger].seed)
    methods = list(methods or DEFAULT_METHODS)
    grid = [float(x) for x in GRIDS[TABLE]]
    w0, c0 = time.perf_counter(), time.process_time()
    data, meta = fit_routing_data(train, X[tr], val, X[va])
    w1 = time.perf_counter()
    rs = train_routerset(data, grid, methods, meta=meta, **({"jobs": jobs} if jobs else {}))
    w2, c2 = time.perf_counter(), time.process_time()
    digest = hashlib.sha256()
    for lam in grid:
        for name in methods:
            digest.update(np.ascontiguousarray(rs.routers[name].predict_proba(X[te], lam, test.input_tokens),
                                               dtype=float).tobytes())
    digest.update(np.ascontiguousarray(data.utilities.quality).tobytes())
    digest.update(np.ascontiguousarray(data.utilities.cost).tobytes())
    out = {"nuisances": w1 - w0, "routers": w2 - w1, "total": w2 - w0, "total_cpu": c2 - c0,
           "digest": digest.hexdigest()[:16], "n_train": len(train), "n_val": len(val)}
    out.update({f"head:{k}": float(v) for k, v in rs.meta["train_seconds"].items()})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", action="append", default=[], help="NAME=FOLDER (a tree's src/); repeatable")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved runs of each tree")
    ap.add_argument("--logger", default="cost-b3", help="the simulated logger (benchmarks.loggers)")
    ap.add_argument("--methods", default="", help="comma-separated routers (default: every default router)")
    ap.add_argument("--jobs", action="append", default=[],
                    help="NAME=JOBS: train_routerset's jobs for tree NAME (default: the tree's own); repeatable")
    ap.add_argument("--one-jobs", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # the subprocess's own run
    ap.add_argument("--out", type=Path, default=results_dir("train_speed"))
    ap.add_argument("--tag", default="", help="suffix of the result files (train_speed_TAG.md)")
    args = ap.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m] or None
    if args.one:
        print("RESULT " + json.dumps(measure(args.logger, methods, args.one_jobs)), flush=True)
        return 0
    trees = [s.split("=", 1) for s in args.src] or [["current", str(ROOT / "src")]]
    jobs = {name: int(n) for name, n in (j.split("=", 1) for j in args.jobs)}
    runs: dict = {name: [] for name, _ in trees}
    load_before = list(os.getloadavg())
    cmd = ["--one", "--logger", args.logger] + (["--methods", args.methods] if args.methods else [])
    for r in range(args.rounds):
        for name, folder in trees:
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(folder).resolve()), str(ROOT)]))
            one = cmd + (["--one-jobs", str(jobs[name])] if name in jobs else [])
            res = subprocess.run([sys.executable, "-m", "benchmarks.train_speed", *one], env=env,
                                 capture_output=True, text=True, timeout=1800, cwd=ROOT)
            line = next((x for x in res.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                raise SystemExit(f"{name} failed:\n{res.stderr[-3000:]}")
            runs[name].append({**json.loads(line[7:]), "load_avg_1m": os.getloadavg()[0]})
            print(f"round {r} {name}: {line[7:]}", flush=True)
    keys = [k for k in runs[trees[0][0]][0] if isinstance(runs[trees[0][0]][0][k], float) and k != "load_avg_1m"]
    medians = {name: {k: float(np.median([x[k] for x in v])) for k in keys} for name, v in runs.items()}
    from causal_router.features.hardware import cpu_model

    result = {"command": "python -m benchmarks.train_speed " + " ".join(
                  [f"--src {n}={_shown(f)}" for n, f in trees] + [f"--jobs {j}" for j in args.jobs]
                  + [f"--rounds {args.rounds}", f"--logger {args.logger}"]
                  + ([f"--methods {args.methods}"] if args.methods else [])),
              "trees": {name: _shown(folder) for name, folder in trees}, "jobs": jobs, "rounds": args.rounds,
              "logger": args.logger, "grid": GRIDS[TABLE], "load_avg_before": load_before,
              "load_avg": list(os.getloadavg()), "cpu": cpu_model(), "cpus": os.cpu_count(),
              "runs": runs, "medians": medians,
              "digests": {name: sorted({x["digest"] for x in v}) for name, v in runs.items()}}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "train_speed" + (f"_{args.tag}" if args.tag else "")
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(report(result))
    print(report(result))
    return 0


def _shown(folder: str) -> str:
    """A tree's folder as results show it: relative to the repository when inside it, else its last two parts
    (committed results name no machine's paths)."""
    path = Path(folder).resolve()
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(Path(*path.parts[-2:]))


def report(r: dict) -> str:
    names = list(r["medians"])
    base = r["medians"][names[0]]
    keys = list(base)
    loads = [x["load_avg_1m"] for v in r["runs"].values() for x in v]
    lines = ["# One RouterBench training, phase by phase, side by side (`python -m benchmarks.train_speed`)", "",
             f"Medians of {r['rounds']} interleaved runs per tree, wall seconds (`total_cpu`: CPU seconds of the "
             f"process). CPU: {r['cpu']} ({r['cpus']} logical cores), shared with other jobs: load average "
             f"{r['load_avg_before'][0]:.1f} before, {min(loads):.1f}-{max(loads):.1f} after each run, "
             f"{r['load_avg'][0]:.1f} at the end. Logs: RouterBench subset, logger `{r['logger']}`, the protocol's "
             f"split; grid {r['grid']}; `nuisances`: `fit_routing_data` (5 cross-fitted folds, refit, DR utilities); "
             "`routers`: `train_routerset` with every default router (`head:*` its parts). Ratio: the first tree's "
             "figure / this one's (above 1: faster).", "",
             "| tree | " + " | ".join(keys) + " | digest |", "|---|" + "---:|" * len(keys) + "---|"]
    for name in names:
        m = r["medians"][name]
        lines.append(f"| {name} | " + " | ".join(
            f"{m[k]:.2f} ({base[k] / m[k] if m[k] else float('nan'):.2f}x)" for k in keys)
            + f" | {', '.join(r['digests'][name])} |")
    lines += ["", "Trees: " + ", ".join(f"`{k}` = {v}" for k, v in r["trees"].items()),
              "", f"Command: `{r['command']}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
