"""Embedding speed and memory on the RouterBench prompts, side by side in one run.

Variants, each in a fresh subprocess (so peak memory is per variant):

* ``plain``         the baseline of issue 5: prompts in their file order (unsorted), fixed
                    batches of 32 padded to their longest prompt, fp32, Hugging Face tokenizer
                    + ``AutoModel`` + masked mean pooling, torch's default thread count;
* ``plain-threads`` the same loop with the thread count our encoder picks (so the table also
                    shows what the threads alone are worth);
* ``ours-fp32``     ``TransformerEncoder(precision="fp32")``: chunked, length-bucketed,
                    token-budget batches, automatic device and threads;
* ``ours-bf16``     ``TransformerEncoder(precision="bf16")`` (only where bf16 is fast: a GPU,
                    or a CPU with AMX; ``--force-bf16`` runs it anyway);

on a seeded subset of ``--n`` distinct prompts; then the whole command
``causal-router embed FILE --cache-dir DIR`` (all distinct prompts, default encoder) is timed as
a process, cold (empty cache) and warm (second run).

Agreement is checked on the way: ours-fp32 against plain (max abs difference), ours-bf16
against ours-fp32 (smallest cosine over every prompt).

Run from the repository root::

    .venv/bin/python benchmarks/embed_speed.py            # ~3-5 min on 2 busy CPU cores
    .venv/bin/python benchmarks/embed_speed.py --n 3148   # every prompt

Results: ``benchmarks/results/embed_speed.json`` and ``embed_speed.md`` (``--tag gpu`` writes
``embed_speed_gpu.*`` instead, e.g. for a run on a GPU machine: the same command, the device is
chosen automatically).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "routerbench_subset" / "routerbench_subset.parquet"


def load_prompts(path: Path, n: int | None, seed: int) -> list[str]:
    import pandas as pd

    prompts = pd.read_parquet(path, columns=["prompt"])["prompt"].astype(str).drop_duplicates().tolist()
    if n is None or n >= len(prompts):
        return prompts
    rng = np.random.default_rng(seed)
    return [prompts[i] for i in sorted(rng.choice(len(prompts), n, replace=False))]  # file order kept


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ---------------------------------------------------------------------------------------------
# worker side: one variant in this process
# ---------------------------------------------------------------------------------------------
def plain_model(device: str, threads: int | None):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from causal_router.features.encoder import default_model_path

    if threads:
        torch.set_num_threads(threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = default_model_path()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32).to(device).eval()
    return tok, model


def plain_loop(tok, model, texts: list[str], device: str, batch_size: int = 32) -> np.ndarray:
    """The baseline: unsorted, fixed batches, fp32, masked mean pooling, L2-normalised."""
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tok(texts[start : start + batch_size], padding=True, truncation=True, max_length=256,
                        return_tensors="pt").to(device)
            hidden = model(**batch).last_hidden_state
            m = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
            out.append(torch.nn.functional.normalize(pooled, dim=1).cpu())
    return torch.cat(out).numpy()


def run_worker(args) -> None:
    texts = json.loads(Path(args.texts).read_text())
    import torch

    from causal_router.features.encoder import TransformerEncoder, auto_threads, resolve_device

    device = resolve_device(args.device)
    info: dict = {"variant": args.worker, "n": len(texts), "device": device}
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    start = time.perf_counter()
    if args.worker.startswith("plain"):
        threads = auto_threads() if args.worker == "plain-threads" else None
        tok, model = plain_model(device, threads)
        plain_loop(tok, model, texts[:2], device)  # warm-up, as for ours
        loaded = time.perf_counter()
        X = plain_loop(tok, model, texts, device)
        info.update(threads=torch.get_num_threads(), precision="fp32")
    else:
        precision = args.worker.split("-", 1)[1].split("@")[0]
        enc = TransformerEncoder(device=args.device, precision=precision, progress=False)
        enc.encode(texts[:2])  # loads and warms up
        loaded = time.perf_counter()
        X = enc.encode(texts)
        info.update(threads=enc._threads or torch.get_num_threads(), precision=enc.resolved_precision,
                    key=enc.key, token_budget=enc.resolved_token_budget)
    end = time.perf_counter()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        info["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    info.update(load_s=loaded - start, encode_s=end - loaded, prompts_per_s=len(texts) / (end - loaded),
                peak_rss_mib=peak_rss_mib())
    np.save(args.vectors, X.astype(np.float32))
    Path(args.result).write_text(json.dumps(info))


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------
def run_variant(name: str, texts_file: Path, work: Path, device: str) -> tuple[dict, np.ndarray]:
    result, vectors = work / f"{name.replace('@', '-at-')}.json", work / f"{name.replace('@', '-at-')}.npy"
    cmd = [sys.executable, __file__, "--worker", name, "--texts", str(texts_file), "--result", str(result),
           "--vectors", str(vectors), "--device", device]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    info = json.loads(result.read_text())
    info["process_s"] = time.perf_counter() - t
    print(f"  {name:14s} n={info['n']:5d} {info['prompts_per_s']:7.1f} prompts/s  "
          f"peak RSS {info['peak_rss_mib']:6.0f} MiB  "
          f"threads {info['threads']}  ({info['encode_s']:.1f}s encoding)", flush=True)
    return info, np.load(vectors)


_CLI = """
import resource, runpy, sys
rss_file = sys.argv.pop(1)
sys.argv[0] = "causal-router"
try:
    runpy.run_module("causal_router.cli", run_name="__main__")
finally:
    open(rss_file, "w").write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
"""


def time_cli(data: Path, cache: Path, device: str, work: Path) -> dict:
    """``causal-router embed DATA --cache-dir CACHE`` as one whole process: wall time, peak RSS."""
    rss = work / "cli-rss.txt"
    args = ["embed", str(data), "--cache-dir", str(cache)] + (["--device", device] if device != "auto" else [])
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CLI, str(rss), *args], check=True, cwd=ROOT,
                          capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "stdout": proc.stdout.strip(), "peak_rss_mib": float(rss.read_text()),
            "command": "causal-router " + " ".join(args).replace(str(cache), "CACHE").replace(str(ROOT) + "/", "")}


def machine() -> dict:
    import torch

    from causal_router.features.encoder import cpu_flags, cpu_has_fast_bf16

    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    flags = cpu_flags()
    return {
        "cpu": model or platform.processor(), "cores": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "amx_bf16": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags,
        "cpu_fast_bf16": cpu_has_fast_bf16(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__, "python": platform.python_version(),
    }


def write_markdown(res: dict, path: Path) -> None:
    v = {r["variant"]: r for r in res["variants"]}
    base = v["plain"]["prompts_per_s"]
    lines = [
        "# Embedding speed (issue 5)",
        "",
        f"Machine: {res['machine']['cpu']}, {res['machine']['cores']} cores, GPU: {res['machine']['gpu'] or 'none'}, "
        f"torch {res['machine']['torch']}; one-minute load average at start "
        f"{res['machine']['load_average_at_start']:.1f} "
        "(other jobs share these cores: ratios within one run are what to compare).",
        "",
        f"Command: `{res['command']}`",
        "",
        f"Throughput on {res['n_prompts']} distinct RouterBench prompts (seeded subset, seed {res['seed']}, "
        f"file order; all-MiniLM-L6-v2, 256-token cap), each variant in its own process:",
        "",
        "| variant | prompts | precision | threads | prompts/s | vs plain | peak RSS (MiB) |",
        "|---|---:|---|---|---:|---:|---:|",
    ]
    for r in res["variants"]:
        lines.append(f"| {r['variant']} | {r['n']} | {r['precision']} | {r['threads']} | {r['prompts_per_s']:.1f} | "
                     f"{r['prompts_per_s'] / base:.2f}x | {r['peak_rss_mib']:.0f} |")
    if res.get("memory_scaling"):
        m = res["memory_scaling"]
        lines += ["", f"Streaming: peak RSS of `{m['variant']}` at {m['n_small']} prompts "
                  f"{m['rss_small_mib']:.0f} MiB, "
                  f"at {m['n_large']} prompts {m['rss_large_mib']:.0f} MiB (+{m['growth_mib']:.0f} MiB; the "
                  f"{m['n_large'] - m['n_small']} extra embeddings and prompt strings alone take "
                  f"{m['payload_mib']:.1f} MiB)."]
    a = res["agreement"]
    lines += ["", "Agreement: " + "; ".join(f"{k} = {val:.7g}" for k, val in a.items()), ""]
    if "cli" in res:
        c = res["cli"]
        lines += [
            f"Whole process, `{c['command']}` ({c['n_prompts']} distinct prompts, default encoder: "
            f"{c['key'].split('|')[-1]}):",
            "",
            f"- cold (empty cache): {c['cold']['seconds']:.1f} s",
            f"- warm (second run): {c['warm']['seconds']:.1f} s = {100 * c['warm_over_cold']:.1f}% of cold",
            f"- peak RSS of the cold run: {c['cold_peak_rss_mib']:.0f} MiB, of the warm run "
            f"{c['warm_peak_rss_mib']:.0f} MiB (the command also reads the whole table into pandas)",
            "",
        ]
    if not res["machine"]["gpu"]:
        lines += ["No GPU on this machine. On one, the same command picks CUDA and bf16 (fp16 on GPUs "
                  "without bf16) by itself; `--tag gpu` writes `embed_speed_gpu.{json,md}`.", ""]
    lines += [f"Ratios: {json.dumps(res['ratios'])}", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--n", type=int, default=600, help="distinct prompts in the throughput subset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--tag", default="", help="suffix of the result files (embed_speed_<tag>.json)")
    ap.add_argument("--skip-cli", action="store_true", help="skip the cold/warm whole-process runs")
    ap.add_argument("--skip-plain-threads", action="store_true")
    ap.add_argument("--skip-scaling", action="store_true",
                    help="skip our fastest variant on every prompt (peak memory against --n prompts)")
    ap.add_argument("--force-bf16", action="store_true", help="run ours-bf16 even where bf16 is slow")
    # worker mode (internal)
    ap.add_argument("--worker")
    ap.add_argument("--texts")
    ap.add_argument("--result")
    ap.add_argument("--vectors")
    ap.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the .json")
    args = ap.parse_args()
    if args.worker:
        return run_worker(args)
    stem = "embed_speed" + (f"_{args.tag}" if args.tag else "")
    if args.markdown_only:
        return write_markdown(json.loads((args.out / f"{stem}.json").read_text()), args.out / f"{stem}.md")

    from causal_router.features.encoder import TransformerEncoder

    started = time.perf_counter()
    texts = load_prompts(args.data, args.n, args.seed)
    info = machine()
    print(f"{len(texts)} prompts; {info['cpu']} x{info['cores']}, GPU {info['gpu']}, "
          f"load {info['load_average_at_start']:.1f}", flush=True)
    auto = TransformerEncoder(device=args.device)
    bf16_fast = auto.resolved_precision in ("bf16", "fp16") or args.force_bf16
    variants = ["plain"] + ([] if args.skip_plain_threads else ["plain-threads"]) + ["ours-fp32"]
    variants += ["ours-bf16"] if bf16_fast else []
    all_texts = load_prompts(args.data, None, 0)
    scaling = not args.skip_scaling and len(all_texts) > len(texts)
    results, vectors = [], {}
    with tempfile.TemporaryDirectory(prefix="embed-speed-") as tmp:
        work = Path(tmp)
        texts_file, all_file = work / "texts.json", work / "all.json"
        texts_file.write_text(json.dumps(texts))
        all_file.write_text(json.dumps(all_texts))
        for name in variants + ([f"{variants[-1]}@all"] if scaling else []):
            r, X = run_variant(name, all_file if name.endswith("@all") else texts_file, work, args.device)
            results.append(r)
            vectors[name] = X
        res: dict = {
            "issue": 5, "command": " ".join(["python", "benchmarks/embed_speed.py", *sys.argv[1:]]),
            "machine": info, "n_prompts": len(texts), "seed": args.seed, "data": str(args.data),
            "variants": results,
        }
        agreement = {"max_abs_diff ours-fp32 vs plain": float(np.abs(vectors["ours-fp32"] - vectors["plain"]).max())}
        if "ours-bf16" in vectors:
            cos = (vectors["ours-bf16"] * vectors["ours-fp32"]).sum(1)
            agreement["min_cosine ours-bf16 vs ours-fp32"] = float(cos.min())
            agreement["prompts_below_0.9999"] = int((cos < 0.9999).sum())
        res["agreement"] = agreement
        if scaling:
            small, large = results[len(variants) - 1], results[-1]
            dim = vectors[large["variant"]].shape[1]
            n_extra = len(all_texts) - len(texts)  # extra float32 rows, and roughly as many str objects
            payload = n_extra * dim * 4 + sum(len(t.encode()) + 49 for t in all_texts[:n_extra])
            res["memory_scaling"] = {
                "variant": small["variant"], "n_small": small["n"], "n_large": large["n"],
                "rss_small_mib": small["peak_rss_mib"], "rss_large_mib": large["peak_rss_mib"],
                "growth_mib": large["peak_rss_mib"] - small["peak_rss_mib"], "payload_mib": payload / 2**20,
            }
        speed = {r["variant"]: r["prompts_per_s"] for r in results if "@" not in r["variant"]}
        ratios = {f"{k}/plain": round(s / speed["plain"], 2) for k, s in speed.items() if k != "plain"}
        if "plain-threads" in speed:
            ratios.update({f"{k}/plain-threads": round(speed[k] / speed["plain-threads"], 2)
                           for k in speed if k.startswith("ours")})
        if not args.skip_cli:
            cache = work / "cache"
            print("  cold and warm runs of causal-router embed ...", flush=True)
            cold = time_cli(args.data, cache, args.device, work)
            warm = time_cli(args.data, cache, args.device, work)
            n_all = len(load_prompts(args.data, None, 0))
            res["cli"] = {
                "command": cold["command"], "n_prompts": n_all,
                "key": auto.key, "cold": cold, "warm": warm, "warm_over_cold": warm["seconds"] / cold["seconds"],
                "cold_prompts_per_s_whole_process": n_all / cold["seconds"],
                "cold_peak_rss_mib": cold["peak_rss_mib"], "warm_peak_rss_mib": warm["peak_rss_mib"],
                "subset_peak_rss_mib": next(r["peak_rss_mib"] for r in results if r["variant"] == variants[-1]),
            }
            ratios["warm/cold"] = round(warm["seconds"] / cold["seconds"], 3)
            print(f"  cold {cold['seconds']:.1f}s ({cold['stdout']}); warm {warm['seconds']:.1f}s "
                  f"({warm['stdout']})", flush=True)
        res["ratios"] = ratios
        res["total_seconds"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    write_markdown(res, args.out / f"{stem}.md")
    print(json.dumps(ratios), flush=True)


if __name__ == "__main__":
    main()
