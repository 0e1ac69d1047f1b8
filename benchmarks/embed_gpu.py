"""Embedding on a GPU: the encoder's CUDA path against the plain transformers loop, side by side.

The flows embed on CUDA when torch sees a GPU (``device: auto``). This script checks that path on
a real GPU, in one process, each variant timed after a warm-up on the same texts:

* ``plain``  the loop a user would write (``embed_speed.py``'s, on the GPU): Hugging Face tokenizer
             + ``AutoModel``, prompts unsorted, batches of 32 padded to their longest prompt, fp32,
             mean pooling;
* ``encoder PRECISION:BATCH_SIZE[:cudnn]``  :class:`~causal_router.features.encoder.TransformerEncoder`
             on ``cuda`` (``auto`` resolves to bf16 where the GPU has it), timed twice (the second
             pass finds every batch shape seen before); ``cudnn`` lets attention use cuDNN's
             SDPA backend, which the encoder avoids on CUDA (the token budget, 65,536 tokens,
             caps every batch anyway);
* ``cpu fp32``  the same encoder on the machine's CPU, on a subset (the reference vectors).

It records prompts/s, the ratio to ``plain``, the min cosine of every variant to the CPU fp32
vectors, and batch invariance on the GPU (the subset embedded alone against the same texts inside
the full run: max absolute difference).

Texts: the distinct prompts of ``--data``, each repeated with a numbered suffix until there are
``--n`` distinct texts (real prompt lengths; the suffix keeps them distinct).

Run from the repository root on a machine with a GPU::

    python -m benchmarks.embed_gpu --n 20000 --tag h200

Where the model has to travel to the GPU machine under a size limit, ``--export-fp16 DIR`` (run
here) writes a copy with the weights rounded to fp16 (44 MB instead of 87) for ``--model DIR``
there; every variant, the CPU reference included, then uses the same rounded weights.

Results: ``benchmarks/results/embed_gpu/TAG.json`` (untagged: ``embed_gpu.json``) and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from .common import result_stem, results_dir

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "samples" / "llmrouter_9models_sample.parquet"
DEFAULT_VARIANTS = "fp32:default,auto:default,bf16:default,bf16:64,bf16:64:cudnn,bf16:default:cudnn,fp16:default"


def load_texts(path: Path, n: int) -> tuple[list[str], int]:
    """``n`` distinct texts, and the number of distinct prompts they were made from."""
    import pandas as pd

    prompts = pd.read_parquet(path, columns=["prompt"])["prompt"].astype(str).drop_duplicates().tolist()
    texts, k = list(prompts), 1
    while len(texts) < n:
        texts += [f"{p} (variant {k})" for p in prompts]
        k += 1
    return texts[:n], len(prompts)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def plain(texts: list[str], model_path: str, device: str, batch_size: int = 32) -> tuple[float, np.ndarray]:
    """Seconds and vectors of embed_speed.py's plain loop on ``device``, after a warm-up."""
    from embed_speed import plain_loop, plain_model

    tok, model = plain_model(model_path, device)
    plain_loop(tok, model, texts[:256], batch_size)  # warm-up
    sync(device)
    start = time.perf_counter()
    X = plain_loop(tok, model, texts, batch_size)
    sync(device)
    return time.perf_counter() - start, X


def encoder_run(texts, model_path, attention: str = "default", **kw) -> tuple[float, float, np.ndarray, object]:
    """Seconds of a first and a second pass over ``texts`` (after a warm-up on 256 of them), the
    vectors and the encoder. ``attention="cudnn"`` lets SDPA use its cuDNN backend again (the
    encoder keeps CUDA attention off it), for the comparison."""
    import contextlib

    from causal_router.features.encoder import TransformerEncoder

    enc = TransformerEncoder(model_path=model_path, progress=False, **kw)
    if attention == "cudnn":
        enc._attention = contextlib.nullcontext
    enc.encode(texts[:256])  # warm-up: model load, kernels
    times = []
    for _ in range(2):
        sync(enc.resolved_device)
        start = time.perf_counter()
        X = enc.encode(texts)
        sync(enc.resolved_device)
        times.append(time.perf_counter() - start)
    return times[0], times[1], X, enc


def export_fp16(model: str | None, out: Path) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    from causal_router.features.encoder import default_model_path

    src = Path(model or default_model_path())
    out.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name != "model.safetensors" and f.suffix in (".json", ".txt"):
            shutil.copy2(f, out / f.name)
    weights = load_file(str(src / "model.safetensors"))
    save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in weights.items()},
              str(out / "model.safetensors"), metadata={"format": "pt"})
    print(f"wrote {out}")


def min_cos(A: np.ndarray, B: np.ndarray) -> float:
    return float(np.min(np.sum(A * B, axis=1) / (np.linalg.norm(A, axis=1) * np.linalg.norm(B, axis=1))))


def write_markdown(res: dict, path: Path) -> None:
    m = res["machine"]
    lines = [
        "# Embedding on a GPU (the flows' `device: auto` path)",
        "",
        f"Machine: {m['gpu']}; CPU {m['cpu']} ({m['cores']} cores); torch {m['torch']}, transformers "
        f"{m['transformers']}, Python {m['python']}.",
        "",
        f"Command: `{res['command']}`",
        "",
        f"{res['n']} distinct texts: the {res['n_prompts']} distinct prompts of `{res['data']}` repeated with a "
        f"numbered suffix; model {res['model']}, 256-token cap. One process, each variant timed after a warm-up; "
        f"CPU fp32 on the first {res['n_ref']} texts (the reference of the cosines).",
        "",
        "| variant | device | precision | batch_size | attention | seconds | again (s) | texts/s | vs plain | "
        "min cosine to CPU fp32 |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for v in res["variants"]:
        again = v.get("seconds_again")
        lines.append(f"| {v['name']} | {v['device']} | {v['precision']} | {v['batch_size']} | "
                     f"{v.get('attention', 'default')} | {v['seconds']:.2f} | "
                     f"{'' if again is None else f'{again:.2f}'} | {v['texts_per_s']:.0f} | {v['vs_plain']:.2f}x | "
                     f"{v['min_cosine_to_cpu_fp32']:.7f} |")
    lines += ["", "Batch invariance on the GPU (the reference subset embedded alone against the same texts in "
              f"the full run), max absolute difference: {json.dumps(res['batch_invariance'])}.", ""]
    if res.get("calibration"):
        c = res["calibration"]
        lines += [f"`precision=\"auto\"` chose **{c['precision']}** on this GPU ({c['reason']}); calibration seconds "
                  f"{json.dumps(c['seconds'])}, min cosine bf16 to fp32 {c['min_cosine']}.", ""]
    if res.get("note"):
        lines += [res["note"], ""]
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--model", default=None, help="model folder (default: the shipped all-MiniLM-L6-v2)")
    ap.add_argument("--n", type=int, default=20000, help="distinct texts")
    ap.add_argument("--n-ref", type=int, default=2000, help="texts embedded on the CPU too (reference)")
    ap.add_argument("--variants", default=DEFAULT_VARIANTS,
                    help="encoder variants, PRECISION:BATCH_SIZE[:cudnn], comma-separated (BATCH_SIZE 'default': "
                         "the encoder's own)")
    ap.add_argument("--out", type=Path, default=results_dir("embed_gpu"))
    ap.add_argument("--tag", default="")
    ap.add_argument("--note", default="")
    ap.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # "cpu": a smoke run of the script
    ap.add_argument("--export-fp16", type=Path, metavar="DIR", help="write the model, fp16 weights, to DIR; stop")
    args = ap.parse_args()
    if args.export_fp16:
        export_fp16(args.model, args.export_fp16)
        return

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("embed_gpu.py: torch sees no GPU here; run it on a machine with one")
    from causal_router.features.encoder import default_model_path
    from causal_router.features.hardware import cpu_model

    model_path = str(args.model or default_model_path())
    texts, n_prompts = load_texts(args.data, args.n)
    ref_texts = texts[: args.n_ref]
    variants, invariance, calibration = [], {}, None

    seconds, X_plain = plain(texts, model_path, args.device)
    variants.append({"name": "plain", "device": args.device, "precision": "fp32", "batch_size": 32, "seconds": seconds,
                     "X": X_plain})
    gpu = args.device.startswith("cuda")
    for spec in args.variants.split(","):
        precision, batch_size, *rest = spec.split(":")
        attention = rest[0] if rest else "default"
        if precision == "fp16" and not gpu:
            continue
        seconds, again, X, enc = encoder_run(texts, model_path, attention, device=args.device, precision=precision,
                                             batch_size=None if batch_size == "default" else int(batch_size))
        variants.append({"name": f"encoder {precision}", "device": enc.resolved_device,
                         "precision": enc.resolved_precision, "batch_size": enc.resolved_batch_size,
                         "attention": attention, "seconds": seconds, "seconds_again": again, "X": X})
        if precision == "auto" and enc.calibration is not None:
            calibration = {k: getattr(enc.calibration, k) for k in ("precision", "reason", "seconds", "min_cosine")}
        alone = enc.encode(ref_texts[::-1])[::-1]
        name = f"{precision} ({enc.resolved_precision}), batch_size {enc.resolved_batch_size}, {attention}"
        invariance[name] = float(np.max(np.abs(alone - X[: len(ref_texts)])))
        del enc
        if gpu:
            torch.cuda.empty_cache()
    cpu_threads = os.cpu_count() or 1
    seconds, _, X_cpu, cpu_enc = encoder_run(ref_texts, model_path, device="cpu", precision="fp32",
                                              threads=cpu_threads)
    n = len(texts)
    base = variants[0]["seconds"]
    for v in variants:
        X = v.pop("X")
        v.update(texts_per_s=n / v["seconds"], vs_plain=base / v["seconds"],
                 min_cosine_to_cpu_fp32=min_cos(X[: len(ref_texts)], X_cpu))
    variants.append({"name": "encoder fp32", "device": "cpu", "precision": "fp32",
                     "batch_size": cpu_enc.resolved_batch_size,
                     "attention": "default", "seconds": seconds * n / len(ref_texts),
                     "texts_per_s": len(ref_texts) / seconds, "vs_plain": base / (seconds * n / len(ref_texts)),
                     "min_cosine_to_cpu_fp32": 1.0, "threads": cpu_threads})
    res = {
        "command": "python -m benchmarks.embed_gpu " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in (("n", args.n), ("n_ref", args.n_ref),
                                                         ("variants", args.variants)))
        + (f" --tag {args.tag}" if args.tag else ""),
        "machine": {"gpu": torch.cuda.get_device_name(0) if gpu else "none (smoke run on the CPU)",
                    "cpu": cpu_model(), "cores": os.cpu_count(),
                    "torch": torch.__version__, "transformers": __import__("transformers").__version__,
                    "python": platform.python_version()},
        "data": str(args.data.relative_to(ROOT)) if args.data.is_relative_to(ROOT) else str(args.data),
        "model": "all-MiniLM-L6-v2 (shipped)" if args.model is None else args.model,
        "n": n, "n_prompts": n_prompts, "n_ref": len(ref_texts),
        "variants": variants, "batch_invariance": invariance, "calibration": calibration, "note": args.note,
    }
    stem = result_stem("embed_gpu", args.tag)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    write_markdown(res, args.out / f"{stem}.md")
    print((args.out / f"{stem}.md").read_text())


if __name__ == "__main__":
    main()
