"""Batch embedding speed of the static encoder (``embed.encoder: static``) against MiniLM, in one run.

Issue 33's goal on this machine: the static encoder at least 2,000 prompts/s at 100,000 prompts,
and at least 100x the MiniLM path measured in the same run.

* Prompts: the distinct prompts of both tables (RouterBench subset, 3,150, about 1,500 characters;
  LLMRouter, 6,108, shorter), repeated in turn with a numeric suffix (``" #<i>"``) up to ``--n``
  (100,000): every text is distinct, so no cache can answer.
* ``static``: :class:`~causal_router.features.static.StaticEncoder` with its defaults (256 dims,
  the model's vocabulary), distilled beforehand or reused from the cache (the distillation's time
  is recorded, not counted), warmed up on 1,000 other texts, then ``encode`` over all ``--n``
  prompts, ``--repeats`` times, alternating with MiniLM.
* ``static, through the embedding cache``: ``embed_with_stats`` into an empty cache folder (hashing
  the texts and writing the shards included), once.
* ``minilm``: :class:`~causal_router.features.encoder.TransformerEncoder` with ``precision="auto"``
  (its stored calibration, or one made first, not counted) on every ``--n / --minilm-n``-th prompt
  (``--minilm-n`` prompts with the same mix of tables), after a warm-up on 16 others.
* Dimensions (speed only): tables of 128 dims (the 256-dim table's first 128 PCA components, which
  is what a 128-dim distillation gives) and 384 dims (random values of the full width: the speed
  depends only on the table's shape) encode ``--sweep-n`` prompts with the same tokenizer.

Everything runs in this one process, encoders loaded beforehand: prompts/s is texts over the
wall time of ``encode``. The record names the CPU, usable cores, torch threads and the load
average before and after (the machine may be shared: ratios within one run are what to compare).

Run from the repository root::

    PYTHONPATH=src python benchmarks/embed_static.py      # ~6 min on 2 loaded cores (once distilled)

Results: ``benchmarks/results/embed_static/embed_static.json`` and ``embed_static.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT_ENV = "CAUSAL_ROUTER_DATA_ROOT"
TABLES = ("routerbench_subset", "llmrouter_9models")
GOAL_PROMPTS_PER_S, GOAL_RATIO = 2000.0, 100.0


def data_root() -> Path:
    """``$CAUSAL_ROUTER_DATA_ROOT``, else ``../shared/data`` beside the repository."""
    return Path(os.environ.get(DATA_ROOT_ENV) or ROOT.parent / "shared" / "data").expanduser()


def table_prompts(root: Path) -> dict[str, list[str]]:
    import pandas as pd

    return {name: pd.read_parquet(root / name / f"{name}.parquet", columns=["prompt"])["prompt"].astype(str)
            .drop_duplicates().tolist() for name in TABLES}


def suffixed(base: list[str], n: int, offset: int = 0) -> list[str]:
    """``n`` distinct texts: ``base`` repeated in turn, each with the suffix `` #<i>``."""
    return [f"{base[i % len(base)]} #{offset + i}" for i in range(n)]


def timed(fn) -> tuple[float, float, object]:
    """(wall seconds, process CPU seconds, result) of ``fn()``."""
    cpu0, wall0 = _cpu(), time.perf_counter()
    out = fn()
    return time.perf_counter() - wall0, _cpu() - cpu0, out


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="prompts for the static encoder")
    ap.add_argument("--minilm-n", type=int, default=1_000, help="prompts for MiniLM (every n/minilm-n-th)")
    ap.add_argument("--sweep-n", type=int, default=20_000, help="prompts per table width (128/256/384)")
    ap.add_argument("--repeats", type=int, default=3, help="static runs (alternating with MiniLM runs)")
    ap.add_argument("--minilm-repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "embed_static")
    ap.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the .json")
    args = ap.parse_args()
    if args.markdown_only:
        return write_markdown(json.loads((args.out / "embed_static.json").read_text()), args.out / "embed_static.md")

    import torch

    from causal_router.features.embed import embed_with_stats
    from causal_router.features.encoder import TransformerEncoder
    from causal_router.features.hardware import auto_threads, cpu_model, usable_cores
    from causal_router.features.static import StaticEncoder

    started, load_before = time.perf_counter(), os.getloadavg()
    tables = table_prompts(data_root())
    # interleave the tables' prompts, so every stride of the list has the same mix
    base = [p for pair in zip(*tables.values()) for p in pair]
    longest = max(tables.values(), key=len)
    base += longest[min(len(t) for t in tables.values()):]
    texts = suffixed(base, args.n)
    step = max(1, args.n // args.minilm_n)
    minilm_texts = texts[::step][: args.minilm_n]
    print(f"{len(texts)} prompts ({', '.join(f'{k} {len(v)}' for k, v in tables.items())} distinct, suffixed); "
          f"{cpu_model()} x{usable_cores()}, load {load_before[0]:.1f}", flush=True)

    static = StaticEncoder()
    model_dir = static.ensure()  # distils once (or reuses); not timed with the encoding
    manifest = json.loads((model_dir / "manifest.json").read_text())
    load_s, _, _ = timed(static._load)
    static.encode(suffixed(base, 1000, offset=10 * args.n))  # warm-up
    minilm = TransformerEncoder(precision="auto")
    precision = minilm.resolved_precision  # calibrates first when nothing is stored (not timed)
    minilm.encode(suffixed(base, 16, offset=11 * args.n))  # warm-up: loads the model, builds kernels
    torch_threads_minilm = minilm._threads

    runs: dict[str, list[dict]] = {"static": [], "minilm": []}

    def run(name: str, enc, items: list[str]) -> np.ndarray:
        wall, cpu, X = timed(lambda: enc.encode(items))
        runs[name].append({"seconds": wall, "cpu_seconds": cpu, "prompts_per_s": len(items) / wall,
                           "load_after": os.getloadavg()[0]})
        print(f"  {name:8s} {len(items):7d} prompts {wall:7.1f}s wall {cpu:7.1f}s CPU "
              f"{len(items) / wall:9.1f} prompts/s  load {os.getloadavg()[0]:.1f}", flush=True)
        return X

    for r in range(max(args.repeats, args.minilm_repeats)):
        if r < args.repeats:
            X = run("static", static, texts)
        if r < args.minilm_repeats:
            run("minilm", minilm, minilm_texts)
    norms = np.linalg.norm(X, axis=1)

    with tempfile.TemporaryDirectory(prefix="embed-static-") as tmp:
        wall, cpu, (_, n_new) = timed(lambda: embed_with_stats(texts, cache_dir=tmp, encoder=static))
        cached = {"seconds": wall, "cpu_seconds": cpu, "prompts_per_s": len(texts) / wall, "encoded": n_new}
        print(f"  static through the embedding cache: {wall:.1f}s, {len(texts) / wall:.1f} prompts/s", flush=True)

    sweep = {}
    sweep_texts = suffixed(base, args.sweep_n, offset=12 * args.n)
    table = static._model.embedding
    rng = np.random.default_rng(0)
    for dims in (128, 256, 384):
        enc = copy.copy(static)
        enc._model = copy.copy(static._model)
        if dims <= table.shape[1]:
            enc._model.embedding = np.ascontiguousarray(table[:, :dims])
        else:
            enc._model.embedding = rng.standard_normal((table.shape[0], dims)).astype(np.float32)
        enc._dim = dims
        wall, cpu, _ = timed(lambda enc=enc: enc.encode(sweep_texts))
        kind = "distilled (first PCA components)" if dims <= table.shape[1] else "random, same shape"
        sweep[str(dims)] = {"seconds": wall, "cpu_seconds": cpu, "prompts_per_s": len(sweep_texts) / wall,
                            "table": kind}
        print(f"  {dims} dims: {len(sweep_texts) / wall:.1f} prompts/s", flush=True)

    static_pps = statistics.median(r["prompts_per_s"] for r in runs["static"])
    minilm_pps = statistics.median(r["prompts_per_s"] for r in runs["minilm"])
    res = {
        "issue": 33, "command": "PYTHONPATH=src python benchmarks/embed_static.py " + " ".join(sys.argv[1:]),
        "commit": _commit(),
        "machine": {"cpu_model": cpu_model(), "usable_cores": usable_cores(), "arch": platform.machine(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "torch_threads_default": torch.get_num_threads(), "torch_threads_minilm": torch_threads_minilm,
                    "auto_threads": auto_threads(), "numpy": np.__version__,
                    "model2vec": manifest["recipe"]["model2vec"]},
        "load_before": list(load_before), "load_after": list(os.getloadavg()),
        "note": "the machine is shared with other jobs (see the load averages): compare the ratio within this run.",
        "data_root": os.path.relpath(data_root(), Path(__file__).resolve().parents[1]),  # no machine paths
        "tables": {k: len(v) for k, v in tables.items()},
        "n_prompts": len(texts), "mean_chars": float(np.mean([len(t) for t in texts])),
        "static": {"key": static.key, "dim": static.dim, "max_length": static.max_length,
                   "model_dir": str(model_dir), "distilled_in_this_run": static.distilled,
                   "distill_seconds": manifest["distill_seconds"], "distill_cpu": manifest["cpu_model"],
                   "load_seconds": load_s, "runs": runs["static"], "prompts_per_s": static_pps,
                   "zero_rows": int((norms == 0).sum()),
                   "max_norm_error": float(np.abs(norms[norms > 0] - 1).max())},
        "static_through_cache": cached,
        "minilm": {"key": minilm.key, "precision": precision, "n_prompts": len(minilm_texts),
                   "mean_chars": float(np.mean([len(t) for t in minilm_texts])), "runs": runs["minilm"],
                   "prompts_per_s": minilm_pps},
        "ratio_static_over_minilm": static_pps / minilm_pps,
        "dims_sweep": {"n_prompts": len(sweep_texts), "widths": sweep},
        "goals": {"static_prompts_per_s": GOAL_PROMPTS_PER_S, "ratio": GOAL_RATIO,
                  "static_met": static_pps >= GOAL_PROMPTS_PER_S, "ratio_met": static_pps / minilm_pps >= GOAL_RATIO},
        "total_seconds": time.perf_counter() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "embed_static.json").write_text(json.dumps(res, indent=2) + "\n")
    write_markdown(res, args.out / "embed_static.md")
    print(json.dumps({"static_prompts_per_s": round(static_pps, 1), "minilm_prompts_per_s": round(minilm_pps, 2),
                      "ratio": round(static_pps / minilm_pps, 1)}), flush=True)


def write_markdown(res: dict, path: Path) -> None:
    m, s, mini = res["machine"], res["static"], res["minilm"]
    goals, cached = res["goals"], res["static_through_cache"]
    when = "in this run" if s["distilled_in_this_run"] else "earlier (reused from the cache)"

    def runs(rs):
        return ", ".join(f"{r['prompts_per_s']:.1f} (load {r['load_after']:.1f})" if "load_after" in r
                         else f"{r['prompts_per_s']:.1f}" for r in rs)

    lines = [
        "# Batch embedding: the static encoder against MiniLM (issue 33)",
        "",
        f"`{res['command'].strip()}` at commit `{res['commit']}`; {m['cpu_model']}, {m['usable_cores']} usable cores, "
        f"torch {m['torch']} ({m['torch_threads_minilm']} threads for MiniLM), model2vec {m['model2vec']}. "
        f"Load average before {res['load_before'][0]:.2f} / {res['load_before'][1]:.2f} / {res['load_before'][2]:.2f}, "
        f"after {res['load_after'][0]:.2f}: {res['note']}",
        "",
        f"Prompts: both tables' distinct prompts ({', '.join(f'{k} {v:,}' for k, v in res['tables'].items())}), "
        f"repeated with a numeric suffix so that all {res['n_prompts']:,} are distinct "
        f"(mean {res['mean_chars']:.0f} characters); MiniLM encodes every "
        f"{res['n_prompts'] // mini['n_prompts']}th of them ({mini['n_prompts']:,}, mean {mini['mean_chars']:.0f} "
        "characters). In one process, encoders loaded and warmed up beforehand.",
        "",
        "| encoder | key | prompts | prompts/s, each run (1-min load average after it) | prompts/s (median) |",
        "|---|---|---:|---|---:|",
        f"| static ({s['dim']} dims, ≤{s['max_length']} tokens) | `{s['key']}` | {res['n_prompts']:,} | "
        f"{runs(s['runs'])} | **{s['prompts_per_s']:,.1f}** |",
        f"| static through the embedding cache (empty; hashing and shard writes included) | same | "
        f"{res['n_prompts']:,} | {cached['prompts_per_s']:.1f} | {cached['prompts_per_s']:,.1f} |",
        f"| MiniLM (`TransformerEncoder`, precision auto -> {mini['precision']}, ≤256 tokens) | `{mini['key']}` | "
        f"{mini['n_prompts']:,} | {runs(mini['runs'])} | **{mini['prompts_per_s']:,.2f}** |",
        "",
        f"**Static / MiniLM: {res['ratio_static_over_minilm']:,.0f}x.** Goals (issue 33): static ≥ "
        f"{goals['static_prompts_per_s']:,.0f} prompts/s at 100,000 prompts: "
        f"{'met' if goals['static_met'] else 'NOT met'}; ≥ {goals['ratio']:.0f}x MiniLM in the same run: "
        f"{'met' if goals['ratio_met'] else 'NOT met'}.",
        "",
        f"The static model: distilled {when} in {s['distill_seconds']:.0f} s on {s['distill_cpu']}; "
        f"loading it took {s['load_seconds']:.2f} s. "
        f"Rows of norm 1 within {s['max_norm_error']:.1e} ({s['zero_rows']} zero rows: texts with no known token).",
        "",
        f"Table width, speed only ({res['dims_sweep']['n_prompts']:,} prompts each):",
        "",
        "| dims | table | prompts/s |",
        "|---:|---|---:|",
    ]
    for dims, w in res["dims_sweep"]["widths"].items():
        lines.append(f"| {dims} | {w['table']} | {w['prompts_per_s']:,.1f} |")
    sizes = {"static": (s["runs"], res["n_prompts"]), "minilm": (mini["runs"], mini["n_prompts"])}
    cpu_rate = {name: statistics.median(n / r["cpu_seconds"] for r in rs) for name, (rs, n) in sizes.items()}
    spread = [r["prompts_per_s"] for r in s["runs"]]
    lines += ["", f"Compare with the spread of the static runs above ({min(spread):,.0f} to {max(spread):,.0f} "
              "prompts/s): on a shared machine one pass per width measures the load as much as the width. "
              "Quality per width is for the studies (issue 33, part 2).", "",
              "Per CPU-second of this process (less sensitive to the other jobs on these cores than the wall "
              f"time): static {cpu_rate['static']:,.0f} prompts, MiniLM {cpu_rate['minilm']:.1f} "
              f"({cpu_rate['static'] / cpu_rate['minilm']:,.0f}x).", ""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
