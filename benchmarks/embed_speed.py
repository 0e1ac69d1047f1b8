"""Embedding speed on the CPU at hand: ``causal-router embed`` against the plain transformers loop.

Both sides run as whole processes (interpreter start, imports, reading the file, loading the
model, encoding, writing), side by side in one run, alternating ``--repeats`` times on the same
``--n`` distinct RouterBench prompts (seeded subset, file order):

* ``plain``  the baseline: pandas reads the file, Hugging Face tokenizer +
             ``AutoModel`` + masked mean pooling, prompts unsorted, fixed batches of 32 padded to
             their longest prompt, fp32, torch's default thread count;
* ``cli``    ``causal-router embed FILE --cache-dir EMPTY`` with the defaults (``--precision
             auto``: the calibration of this machine already stored, as on every run but the first);
* ``cli-first-use``  the same, once, with no stored calibration (the few seconds of calibration
             included);
* ``cli-warm``  a second run on the filled cache;
* ``cli-fp32`` / ``cli-bf16``  explicit precisions, once each (bf16 only where torch can run it),
             to show what ``auto`` chose between.

The record names the CPU model and the flags that decide bf16 speed (``avx512_bf16``,
``amx_bf16``/``amx_tile``, ``avx512f``, ``avx2``), the load average before and after (the
machine may be shared), the calibration's measurements and choice, and the agreement of the
vectors (cosine of ``cli`` to ``plain``). Goal: ``cli`` at least 1.0x ``plain`` on any
CPU, 1.3x where the CPU has bf16 instructions, 2.5x with AMX.

Run from the repository root::

    python -m benchmarks.embed_speed --n 400          # ~3 min on 2 cores

Results: ``benchmarks/results/embed_speed/embed_speed.json`` and ``.md`` (``--tag NAME`` writes
``NAME.*``, e.g. for another machine).
"""

from __future__ import annotations

import argparse
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
GOALS = {"amx": 2.5, "bf16 instructions": 1.3, "none": 1.0}


def load_prompts(path: Path, n: int | None, seed: int) -> list[str]:
    import pandas as pd

    prompts = pd.read_parquet(path, columns=["prompt"])["prompt"].astype(str).drop_duplicates().tolist()
    if n is None or n >= len(prompts):
        return prompts
    rng = np.random.default_rng(seed)
    return [prompts[i] for i in sorted(rng.choice(len(prompts), n, replace=False))]  # file order kept


# ---------------------------------------------------------------------------------------------
# the plain loop, as a user would write it (run as its own process: --plain FILE OUT)
# ---------------------------------------------------------------------------------------------
def plain_model(path, device: str = "cpu"):
    """(tokenizer, fp32 model on ``device``) through transformers, as a user would load them."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return tok, AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32).eval().to(device)


def plain_loop(tok, model, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Unit-norm mean-pooled vectors, shape (len(texts), dim): unsorted fixed batches padded to their
    longest text, on the model's device."""
    import torch

    device = next(model.parameters()).device
    vectors = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tok(texts[start : start + batch_size], padding=True, truncation=True, max_length=256,
                        return_tensors="pt").to(device)
            hidden = model(**batch).last_hidden_state
            m = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
            vectors.append(torch.nn.functional.normalize(pooled, dim=1).cpu())
    return torch.cat(vectors).numpy()


def plain(file: str, out: str, batch_size: int = 32) -> None:
    import pandas as pd
    import torch

    from causal_router.features.encoder import default_model_path

    texts = pd.read_parquet(file)["prompt"].astype(str).drop_duplicates().tolist()
    tok, model = plain_model(default_model_path())
    np.save(out, plain_loop(tok, model, texts, batch_size))
    print(f"{len(texts)} prompts, {torch.get_num_threads()} threads")


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------
def timed(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + system) and stdout of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, proc.stdout.strip()


def machine() -> dict:
    import torch

    from causal_router.features.hardware import cpu_model, idle_threads, relevant_cpu_flags, torch_has_onednn_bf16

    flags = relevant_cpu_flags()
    kind = "amx" if flags["amx_bf16"] else "bf16 instructions" if flags["avx512_bf16"] else "none"
    return {
        "cpu": cpu_model(), "flags": flags, "bf16_kind": kind, "cores": os.cpu_count(),
        "idle_threads": idle_threads(), "torch_default_threads": torch.get_num_threads(),
        "onednn_bf16": torch_has_onednn_bf16(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__, "python": platform.python_version(),
    }


def write_markdown(res: dict, path: Path) -> None:
    m, r = res["machine"], res["ratios"]
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in m["flags"].items())
    cal = res["calibration"]
    lines = [
        "# Embedding speed on the CPU at hand (issue 13)",
        "",
        f"Machine: {m['cpu']} ({flags}); {m['cores']} cores, torch {m['torch']} (oneDNN bf16: "
        f"{'yes' if m['onednn_bf16'] else 'no'}), GPU: {m['gpu'] or 'none'}. One-minute load average "
        f"{res['load_before']:.1f} before and {res['load_after']:.1f} after the run: {res['note']}",
        "",
        f"Command: `{res['command']}`",
        "",
        f"{res['n_prompts']} distinct RouterBench prompts (seeded subset, seed {res['seed']}, file order; "
        f"all-MiniLM-L6-v2, 256-token cap). Whole processes, wall time, alternating "
        f"{res['repeats']} times:",
        "",
        "| variant | precision | threads | wall, each run (s) | median (s) | prompts/s (median) | vs plain | "
        "CPU s (median) |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    base = statistics.median(res["variants"]["plain"]["seconds"])
    for name, v in res["variants"].items():
        med = statistics.median(v["seconds"])
        lines.append(f"| {name} | {v['precision']} | {v['threads']} | {', '.join(f'{s:.1f}' for s in v['seconds'])} | "
                     f"{med:.1f} | {res['n_prompts'] / med:.1f} | {base / med:.2f}x | "
                     f"{statistics.median(v['cpu_seconds']):.1f} |")
    lines += [
        "",
        f"`--precision auto` chose **{cal['precision']}** ({cal['reason']}); calibration timings "
        f"(seconds for {cal['n_texts']} texts, best of interleaved runs, by precision and threads): "
        f"{json.dumps(cal['seconds'])}; min cosine bf16 to fp32: {cal['min_cosine']}.",
        "",
        f"Agreement: min cosine of `cli` to `plain` vectors {res['agreement']['min_cosine_cli_vs_plain']:.7f}.",
        "",
        f"Ratios (median wall time of plain / median wall time of the variant): {json.dumps(r)}; "
        f"the same with CPU time (less sensitive to other jobs): {json.dumps(res['cpu_time_ratios'])}. "
        f"Goal for this CPU ({m['bf16_kind']}): cli >= {res['goal']}x plain: "
        f"**{'met' if res['goal_met'] else 'NOT met'}**.",
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="default: the shared RouterBench table")
    ap.add_argument("--n", type=int, default=400, help="distinct prompts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2, help="alternating runs of plain and cli")
    ap.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/embed_speed")
    ap.add_argument("--tag", default="", help="name of the result files (<tag>.json)")
    ap.add_argument("--note", default="", help="a sentence on the conditions, written with the results")
    ap.add_argument("--plain", nargs=2, metavar=("FILE", "OUT"), help=argparse.SUPPRESS)  # worker mode
    ap.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the .json")
    args = ap.parse_args()
    if args.plain:
        return plain(*args.plain)
    from .common import result_stem, results_dir, table_path  # not in the timed plain worker

    args.data = args.data or table_path("routerbench_subset")
    args.out = args.out or results_dir("embed_speed")
    stem = result_stem("embed_speed", args.tag)
    if args.markdown_only:
        return write_markdown(json.loads((args.out / f"{stem}.json").read_text()), args.out / f"{stem}.md")

    import pandas as pd

    from causal_router.features.cache import EmbeddingCache
    from causal_router.features.hardware import auto_threads

    started, load_before = time.perf_counter(), os.getloadavg()[0]
    texts = load_prompts(args.data, args.n, args.seed)
    info = machine()
    print(f"{len(texts)} prompts; {info['cpu']} x{info['cores']} ({info['bf16_kind']}), load {load_before:.1f}",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="embed-speed-") as tmp:
        work = Path(tmp)
        file = work / "prompts.parquet"
        pd.DataFrame({"prompt_id": [f"p{i}" for i in range(len(texts))], "prompt": texts}).to_parquet(file)
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "CAUSAL_ROUTER_CALIBRATION_DIR": str(work / "calibration")}
        env.pop("CAUSAL_ROUTER_TORCH_THREADS", None)
        cli = [sys.executable, "-m", "causal_router.cli", "embed", str(file)]
        runs: dict[str, list[float]] = {}
        cpu_runs: dict[str, list[float]] = {}
        counter = iter(range(1000))

        def run(name: str, cmd: list[str]) -> None:
            seconds, cpu, out = timed(cmd, env)
            runs.setdefault(name, []).append(seconds)
            cpu_runs.setdefault(name, []).append(cpu)
            print(f"  {name:14s} {seconds:6.1f}s wall {cpu:6.1f}s CPU  {out.splitlines()[-1] if out else ''}",
                  flush=True)

        def fresh_cache() -> list[str]:
            return ["--cache-dir", str(work / f"cache{next(counter)}")]

        timed([sys.executable, "-c", "import torch, transformers, pandas"], env)  # untimed: fills the OS file cache
        run("cli-first-use", cli + fresh_cache())  # stores the calibration
        last_cache = None
        for _ in range(args.repeats):
            run("plain", [sys.executable, __file__, "--plain", str(file), str(work / "plain.npy")])
            last_cache = fresh_cache()
            run("cli", cli + last_cache)
        run("cli-warm", cli + last_cache)
        run("cli-fp32", cli + fresh_cache() + ["--precision", "fp32"])
        if info["onednn_bf16"]:
            run("cli-bf16", cli + fresh_cache() + ["--precision", "bf16"])
        calibration = json.loads(next((work / "calibration").glob("*.json")).read_text())
        # the vectors the cli stored, read back with the key its calibration gave
        os.environ["CAUSAL_ROUTER_CALIBRATION_DIR"] = str(work / "calibration")
        from causal_router.features.encoder import TransformerEncoder

        enc = TransformerEncoder()
        X = np.empty((len(texts), enc.dim), dtype=np.float32)
        found = EmbeddingCache(last_cache[1]).fill(enc.key, texts, X)
        P = np.load(work / "plain.npy")
        agreement = {"min_cosine_cli_vs_plain": float((X * P).sum(1)[found].min()), "rows_compared": int(found.sum())}
    threads = auto_threads()
    precisions = {"plain": "fp32", "cli": calibration["precision"], "cli-first-use": calibration["precision"],
                  "cli-warm": "(cache)", "cli-fp32": "fp32", "cli-bf16": "bf16"}
    variants = {name: {"seconds": s, "cpu_seconds": cpu_runs[name], "precision": precisions[name],
                       "threads": info["torch_default_threads"] if name == "plain" else threads}
                for name, s in runs.items()}
    base = statistics.median(runs["plain"])
    ratios = {f"{k}/plain": round(base / statistics.median(v), 2) for k, v in runs.items() if k != "plain"}
    cpu_base = statistics.median(cpu_runs["plain"])
    cpu_ratios = {f"{k}/plain": round(cpu_base / statistics.median(v), 2) for k, v in cpu_runs.items() if k != "plain"}
    goal = GOALS[info["bf16_kind"]]
    res = {
        "issue": 13, "command": " ".join(["python", "-m", "benchmarks.embed_speed", *sys.argv[1:]]),
        "machine": info, "load_before": load_before, "load_after": os.getloadavg()[0],
        "note": args.note or "other jobs may share these cores; ratios within one run are what to compare.",
        "n_prompts": len(texts), "seed": args.seed, "repeats": args.repeats, "data": args.data.name,
        "variants": variants, "calibration": calibration, "agreement": agreement, "ratios": ratios,
        "cpu_time_ratios": cpu_ratios,
        "goal": goal, "goal_met": ratios["cli/plain"] >= goal, "total_seconds": time.perf_counter() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    write_markdown(res, args.out / f"{stem}.md")
    print(json.dumps(ratios), flush=True)


if __name__ == "__main__":
    main()
