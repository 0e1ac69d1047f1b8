"""Load test of ``causal-router serve`` on RouterBench prompts, against offline embedding, in one run.

1. ``causal-router embed`` (a subprocess, empty cache) embeds the benchmark prompts: the offline
   throughput the service is compared with.
2. A router is fitted on those embeddings (``dr-regress``: ridge of each model's RouterBench
   score and cost on the prompt embedding) and registered in a temporary MLflow store as
   ``causal-router-bench`` with alias ``champion``.
3. ``causal-router serve`` runs in a subprocess on a free loopback port (one worker, default
   encoder, exploration on, SQLite decision log); a bounded asyncio load generator sends
   single-prompt requests at concurrency 1, 4, 16 and 64 (a fixed number of requests each,
   every request a distinct prompt), then stops.

Reported per level: p50/p95/p99 latency, throughput, errors, the server's resident memory and
the mean micro-batch size (decisions of one batch share their timestamp in the log); then
throughput at concurrency 16 as a ratio to the offline throughput, and whether every
acknowledged decision is in the decision log. The machine's CPU model and load are recorded.

Run from the repository root (a few minutes on 2 busy cores)::

    .venv/bin/python -m benchmarks.serve_load [--requests 24,64,128,128] [--data PATH]

Results: ``benchmarks/results/serve_load/serve_load.md`` and ``serve_load.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import drive, results_dir, table_path

LEVELS = (1, 4, 16, 64)
NAME = "causal-router-bench"
LAM = 100.0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def rss_mib(pid: int) -> dict:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS", "VmHWM")):
                key, val = line.split(":", 1)
                out[key] = int(val.split()[0]) / 1024
    except OSError:
        pass
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(tmp: Path) -> dict:
    env = dict(os.environ)
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}", MLFLOW_DISABLE_TELEMETRY="true",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DO_NOT_TRACK="true")
    env.pop("CAUSAL_ROUTER_DECISIONS_URI", None)
    env.pop("CAUSAL_ROUTER_API_TOKEN", None)
    return env


def _embed_cli(prompts: list[str], tmp: Path, env: dict, tag: str) -> tuple[float, str, Path]:
    import pandas as pd

    f = tmp / f"prompts-{tag}.parquet"
    pd.DataFrame({"prompt": prompts}).to_parquet(f, index=False)
    cache = tmp / f"cache-{tag}"
    out = subprocess.run([sys.executable, "-m", "causal_router.cli", "embed", str(f), "--cache-dir", str(cache)],
                         env=env, capture_output=True, text=True, check=True)
    return float(re.search(r"([\d.]+)s\s*$", out.stdout.strip()).group(1)), out.stdout.strip(), cache


def offline_embed(prompts: list[str], tmp: Path, env: dict, n_small: int = 8) -> dict:
    """``causal-router embed`` (empty cache) on all the prompts and on the first ``n_small``: the
    command's own timing includes loading the encoder, so the steady throughput is the marginal
    one, (n - n_small) / (t_all - t_small), comparable with a warm server."""
    t_small, _, _ = _embed_cli(prompts[:n_small], tmp, env, "small")
    t_all, output, cache = _embed_cli(prompts, tmp, env, "all")
    marginal = (len(prompts) - n_small) / max(t_all - t_small, 1e-9)
    return {"prompts": len(prompts), "seconds": t_all, "small_prompts": n_small, "small_seconds": t_small,
            "whole_command_throughput": len(prompts) / t_all, "throughput": marginal, "output": output,
            "cache": str(cache)}


def register_router(table, prompts: list[str], cache: str, tmp: Path) -> None:
    """Fit dr-regress on the prompts' embeddings (read back from the cache) and register it."""
    import mlflow
    from sklearn.linear_model import Ridge

    from causal_router.features.embed import default_encoder, embed_with_stats
    from causal_router.policy.routers import DRRegressRouter
    from causal_router.policy.routerset import RouterSet
    from causal_router.registry import tracking
    from causal_router.registry.pyfunc import log_router_model

    enc = default_encoder()
    X, n_new = embed_with_stats(prompts, cache_dir=cache, encoder=enc)
    assert n_new == 0, "the embeddings should all come from the offline run's cache"
    sub = table[table["prompt"].isin(set(prompts))]
    models = sorted(sub["model"].unique())
    wide_q = sub.pivot_table(index="prompt", columns="model", values="score").reindex(index=prompts, columns=models)
    wide_c = sub.pivot_table(index="prompt", columns="model", values="cost").reindex(index=prompts, columns=models)
    router = DRRegressRouter(alpha=10.0)
    router.n_arms_ = len(models)
    router.quality_ = Ridge(alpha=10.0).fit(X, wide_q.fillna(wide_q.mean()).to_numpy())
    router.cost_ = Ridge(alpha=10.0).fit(X, wide_c.fillna(wide_c.mean()).to_numpy())
    tpc = float(sub["input_tokens"].sum() / sub["prompt"].str.len().sum()) if "input_tokens" in sub else None
    rs = RouterSet(models, [LAM], {"dr-regress": router}, enc.key, {"n_features": int(X.shape[1]),
                                                                     "tokens_per_char": tpc})
    d = rs.save(tmp / "routers")
    tracking.configure(tmp)
    with mlflow.start_run(run_name="serve-load-benchmark"):
        info = log_router_model(d, "bench", "dr-regress", lam=LAM, registered_model_name=NAME)
    mlflow.MlflowClient().set_registered_model_alias(NAME, "champion", info.registered_model_version)


async def run_level(url: str, prompts: list[str], concurrency: int) -> dict:
    async def send(client, p):
        r = await client.post("/v1/route", json={"prompts": [p], "lam": LAM})
        if r.status_code != 200:
            return False, f"{r.status_code} {r.text[:200]}"
        return True, r.json()["decisions"][0]["decision_id"]

    lat, acked, errors, wall = await drive(url, prompts, concurrency, send)
    ms = np.array(lat) * 1000 if lat else np.array([np.nan])
    return {"concurrency": concurrency, "requests": len(prompts), "ok": len(lat), "errors": len(errors),
            "error_examples": errors[:3], "seconds": wall, "throughput": len(lat) / wall,
            "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)), "acked": acked}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=table_path("routerbench_subset"),
                    help="RouterBench full-feedback parquet")
    ap.add_argument("--requests", default="24,64,128,128", help="requests per level (concurrency 1,4,16,64)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=results_dir("serve_load"))
    args = ap.parse_args(argv)
    import pandas as pd

    counts = [int(x) for x in args.requests.split(",")]
    if len(counts) != len(LEVELS):
        ap.error(f"--requests needs {len(LEVELS)} numbers")
    table = pd.read_parquet(args.data)
    distinct = table["prompt"].astype(str).drop_duplicates().tolist()
    rng = np.random.default_rng(args.seed)
    need = sum(counts) + 8
    chosen = [distinct[i] for i in rng.choice(len(distinct), min(need, len(distinct)), replace=False)]
    load_avg_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp_s:
        tmp = Path(tmp_s)
        env = env_for(tmp)
        os.environ.update({k: env[k] for k in ("MLFLOW_TRACKING_URI", "MLFLOW_DISABLE_TELEMETRY")})
        offline = offline_embed(chosen, tmp, env)
        print(f"offline: {offline['output']}", flush=True)
        register_router(table, chosen, offline["cache"], tmp)
        project = tmp / "project"
        project.mkdir()
        (project / "params.yaml").write_text("serve:\n  explore: 0.1\n  floor: 0.01\n  seed: 0\n"
                                             "  batch_window_ms: 5\n  max_batch: 64\n")
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "causal_router.cli", "serve", "--port", str(port),
                                   "--model-uri", f"models:/{NAME}@champion"], cwd=project, env=env,
                                  stdout=subprocess.DEVNULL, stderr=open(tmp / "server.log", "w"))
        url = f"http://127.0.0.1:{port}"
        try:
            import httpx

            deadline = time.monotonic() + 180
            while True:
                if server.poll() is not None:
                    raise SystemExit("server exited:\n" + (tmp / "server.log").read_text()[-3000:])
                try:
                    if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("server did not start")
                time.sleep(0.5)
            asyncio.run(run_level(url, chosen[:8], 4))  # warm-up: loads the encoder
            levels, start = [], 8
            for c, n in zip(LEVELS, counts):
                res = asyncio.run(run_level(url, chosen[start:start + n], c))
                start += n
                res["server_rss_mib"] = rss_mib(server.pid).get("VmRSS")
                levels.append(res)
                print(f"concurrency {c}: {res['throughput']:.1f} req/s, p50 {res['p50_ms']:.0f} ms, "
                      f"p99 {res['p99_ms']:.0f} ms, errors {res['errors']}", flush=True)
            peak = rss_mib(server.pid).get("VmHWM")
        finally:
            server.terminate()
            server.wait(timeout=30)
        from causal_router.serving.store import DecisionStore

        log = DecisionStore(f"sqlite:///{project / 'decisions' / 'decisions.db'}").frame("decisions")
    stored = set(log["decision_id"])
    for res in levels:
        ids = set(res.pop("acked"))
        res["lost"] = len(ids - stored)
        mine = log[log["decision_id"].isin(ids)]
        res["mean_batch"] = float(len(mine) / max(1, mine["created_at"].nunique()))
    at16 = next(r for r in levels if r["concurrency"] == 16)
    result = {"cpu": cpu_model(), "cpus": os.cpu_count(), "load_avg_before": load_avg_before,
              "load_avg_after": os.getloadavg(), "python": platform.python_version(), "offline": offline,
              "levels": levels, "server_peak_rss_mib": peak,
              "ratio_c16_to_offline": at16["throughput"] / offline["throughput"],
              "requests": counts, "lam": LAM}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve_load.json").write_text(json.dumps(result, indent=2, default=str))
    (args.out / "serve_load.md").write_text(report(result))
    print(report(result))


def report(r: dict) -> str:
    off = r["offline"]
    lines = [
        "# Serving under load (`python -m benchmarks.serve_load`)",
        "",
        f"CPU: {r['cpu']} ({r['cpus']} logical cores), Python {r['python']}. **Shared machine**: other engineers' "
        f"jobs ran at the same time (load average {r['load_avg_before'][0]:.1f} before, "
        f"{r['load_avg_after'][0]:.1f} after), and the load generator runs on the same cores as the "
        "server, so absolute figures are pessimistic and noisy; the ratio is measured side by side in one run. "
        f"Modest request counts ({', '.join(map(str, r['requests']))} for concurrency 1/4/16/64).",
        "",
        "Server: `causal-router serve`, one worker, default encoder (all-MiniLM-L6-v2, fp32 on CPU), "
        "exploration 0.1, micro-batching window 5 ms (adaptive, at most 100 ms; at most 64 prompts), SQLite "
        "decision log (WAL, synchronous=FULL: each batch committed before its responses). Requests: one distinct "
        "RouterBench prompt each (mean ~1,500 characters, truncated at 256 tokens).",
        "",
        f"Offline: `causal-router embed` on the same {off['prompts']} prompts, empty cache: {off['seconds']:.1f} s "
        f"({off['whole_command_throughput']:.1f} prompts/s for the whole command); on {off['small_prompts']} of them "
        f"{off['small_seconds']:.1f} s, nearly all of it loading the encoder. Steady offline throughput, "
        f"(n - {off['small_prompts']}) / (t_all - t_small): **{off['throughput']:.1f} prompts/s**.",
        "",
        "| concurrency | requests | errors | lost | throughput (req/s) | p50 (ms) | p95 (ms) | p99 (ms) "
        "| mean batch | server RSS (MiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for x in r["levels"]:
        lines.append(f"| {x['concurrency']} | {x['requests']} | {x['errors']} | {x['lost']} | {x['throughput']:.1f} | "
                     f"{x['p50_ms']:.0f} | {x['p95_ms']:.0f} | {x['p99_ms']:.0f} | {x['mean_batch']:.1f} | "
                     f"{x['server_rss_mib'] or float('nan'):.0f} |")
    lines += [
        "",
        f"Throughput at concurrency 16 / offline embedding throughput: **{r['ratio_c16_to_offline']:.2f}** "
        "(goal: at least 0.8).",
        f"Server peak RSS: {r['server_peak_rss_mib'] or float('nan'):.0f} MiB. Lost decisions: acknowledged decisions "
        "missing from the decision log after the run (0 everywhere means none).",
        "",
        "Reproduce: `.venv/bin/python -m benchmarks.serve_load` (the shared RouterBench table).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
