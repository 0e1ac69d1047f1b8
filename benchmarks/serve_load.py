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

Reported per level: p50/p95/p99 latency, throughput, errors, the server's resident memory, the CPU
the server and the load generator used (shares of one core: on a shared machine, what they got) and
the mean micro-batch size (decisions of one batch share their timestamp in the log); then
throughput at concurrency 16 as a ratio to the offline throughput, and whether every
acknowledged decision is in the decision log. The machine's CPU model and load are recorded.

With ``--encoder static`` (the fast encoder, ``embed.encoder: static``) the router is fitted on the
static encoder's features of the table's distinct prompts (encoded in this process; no offline CLI
run, whose figures are the default encoder's story), the levels are concurrency 1, 16, 64 and 256
(more requests than distinct prompts: numbered copies), and the floor of a lone request is measured
beside (one prompt's encoding, one durable commit). ``--workers N`` runs ``serve --workers N``,
``--max-batch`` sets ``serve.max_batch``, ``--tag`` names a variant's files. Every level is bounded by
its request count and a time limit (``--max-seconds``). The load generator is a minimal HTTP/1.1
keep-alive client on raw asyncio streams (one connection per concurrent client, loopback only), far
cheaper per request than httpx, so that it takes little of the cores it shares with the server (the
committed default-encoder figures were taken with httpx, before this client).

Run from the repository root (a few minutes on 2 busy cores)::

    .venv/bin/python -m benchmarks.serve_load [--requests 24,64,128,128] [--data PATH]
    .venv/bin/python -m benchmarks.serve_load --encoder static [--workers 2 --tag w2]

Results: ``benchmarks/results/serve_load/serve_load[_static[_TAG]].md`` and ``.json``.
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

from .common import results_dir, table_path

LEVELS = (1, 4, 16, 64)
STATIC_LEVELS = (1, 16, 64, 256)
STATIC_REQUESTS = "400,2000,4000,4000"
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


def default_features(prompts: list[str], cache: str):
    """The default encoder's embeddings of ``prompts``, read back from the offline run's cache."""
    from causal_router.features.embed import default_encoder, embed_with_stats

    enc = default_encoder()
    X, n_new = embed_with_stats(prompts, cache_dir=cache, encoder=enc)
    assert n_new == 0, "the embeddings should all come from the offline run's cache"
    return X, enc.key


def register_router(table, prompts: list[str], X, key: str, tmp: Path) -> None:
    """Fit dr-regress on the prompts' features ``X`` (of the encoder ``key``) and register it."""
    import mlflow
    from sklearn.linear_model import Ridge

    from causal_router.policy.routers import DRRegressRouter
    from causal_router.policy.routerset import RouterSet
    from causal_router.registry import tracking
    from causal_router.registry.pyfunc import log_router_model

    sub = table[table["prompt"].isin(set(prompts))]
    models = sorted(sub["model"].unique())
    wide_q = sub.pivot_table(index="prompt", columns="model", values="score").reindex(index=prompts, columns=models)
    wide_c = sub.pivot_table(index="prompt", columns="model", values="cost").reindex(index=prompts, columns=models)
    router = DRRegressRouter(alpha=10.0)
    router.n_arms_ = len(models)
    router.quality_ = Ridge(alpha=10.0).fit(X, wide_q.fillna(wide_q.mean()).to_numpy())
    router.cost_ = Ridge(alpha=10.0).fit(X, wide_c.fillna(wide_c.mean()).to_numpy())
    tpc = float(sub["input_tokens"].sum() / sub["prompt"].str.len().sum()) if "input_tokens" in sub else None
    rs = RouterSet(models, [LAM], {"dr-regress": router}, key, {"n_features": int(X.shape[1]),
                                                                     "tokens_per_char": tpc})
    d = rs.save(tmp / "routers")
    tracking.configure(tmp)
    with mlflow.start_run(run_name="serve-load-benchmark"):
        info = log_router_model(d, "bench", "dr-regress", lam=LAM, registered_model_name=NAME)
    mlflow.MlflowClient().set_registered_model_alias(NAME, "champion", info.registered_model_version)


class RawClient:
    """One HTTP/1.1 keep-alive connection on raw asyncio streams: POST a JSON body, read the status and a
    ``content-length`` body (what uvicorn sends). Far cheaper per request than httpx, so that the load
    generator takes less of the cores it shares with the server."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n"
                          b"content-length: %d\r\n\r\n%s" % (path.encode(), self.host.encode(), len(body), body))
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, close = 0, False
        for line in lines[1:]:
            k, _, v = line.partition(":")
            k = k.strip().lower()
            if k == "content-length":
                length = int(v)
            elif k == "connection" and v.strip().lower() == "close":
                close = True
        data = await self.reader.readexactly(length)
        if close:
            await self.close()
        return status, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None


async def run_level(url: str, prompts: list[str], concurrency: int, max_seconds: float = 120.0) -> dict:
    """Send each prompt once (``/v1/route``, one prompt per request) from ``concurrency`` clients, each
    on its own keep-alive connection; stops sending after ``max_seconds`` (bounded in count and time)."""
    host, port = url.rsplit("//", 1)[1].split(":")
    queue = list(reversed(prompts))
    lat, acked, errors = [], [], []
    deadline = time.perf_counter() + max_seconds

    async def worker():
        client = RawClient(host, int(port))
        try:
            while queue and time.perf_counter() < deadline:
                body = json.dumps({"prompts": [queue.pop()], "lam": LAM}).encode()
                t0 = time.perf_counter()
                try:
                    status, data = await client.post("/v1/route", body)
                except (OSError, asyncio.IncompleteReadError) as exc:
                    errors.append(repr(exc)[:200])
                    await client.close()
                    continue
                if status != 200:
                    errors.append(f"{status} {data[:200]!r}")
                    continue
                lat.append(time.perf_counter() - t0)
                acked.append(json.loads(data)["decisions"][0]["decision_id"])
        finally:
            await client.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    ms = np.array(lat) * 1000 if lat else np.array([np.nan])
    return {"concurrency": concurrency, "requests": len(prompts), "sent": len(lat) + len(errors), "ok": len(lat),
            "errors": len(errors), "error_examples": errors[:3], "seconds": wall, "throughput": len(lat) / wall,
            "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)), "acked": acked}


def distinct_prompts(distinct: list[str], n: int, rng) -> list[str]:
    """``n`` distinct prompts: the table's in a random order, then again with a numbered suffix."""
    order = [distinct[i] for i in rng.permutation(len(distinct))]
    return [p if i < len(order) else f"{p} (request {i})" for i, p in
            ((i, order[i % len(order)]) for i in range(n))]


def floor(enc, prompts: list[str], n: int = 40) -> dict:
    """What one lone request cannot avoid, measured in this process: the encoder on one RouterBench prompt
    and one durable commit of one decision to a SQLite log (synchronous=FULL), p50 of each."""
    from .gateway_overhead import commit_time

    t = []
    for p in prompts[:n]:
        t0 = time.perf_counter()
        enc.encode([p])
        t.append(time.perf_counter() - t0)
    return {"encode_one_p50_ms": float(np.percentile(np.asarray(t) * 1000, 50)), "sqlite_commit_p50_ms": commit_time(n)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its children (``serve --workers N``)."""
    total = 0.0
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    for p in [pid, *map(int, kids)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=table_path("routerbench_subset"),
                    help="RouterBench full-feedback parquet")
    ap.add_argument("--encoder", default=None, choices=[None, "static"],
                    help="the router's encoder: the default (all-MiniLM-L6-v2) or 'static'")
    ap.add_argument("--levels", default=None, help="concurrency levels (default 1,4,16,64; static: 1,16,64,256)")
    ap.add_argument("--requests", default=None,
                    help=f"requests per level (default 24,64,128,128; static: {STATIC_REQUESTS})")
    ap.add_argument("--max-seconds", type=float, default=60.0, help="time limit of each level's sending")
    ap.add_argument("--workers", type=int, default=1, help="serve --workers N")
    ap.add_argument("--max-batch", type=int, default=64, help="serve.max_batch (most prompts per micro-batch)")
    ap.add_argument("--tag", default="", help="suffix of the result files (a variant, e.g. w2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=results_dir("serve_load"))
    args = ap.parse_args(argv)
    import pandas as pd

    import causal_router

    static = args.encoder == "static"
    levels_c = [int(x) for x in (args.levels or ",".join(map(str, STATIC_LEVELS if static else LEVELS))).split(",")]
    counts = [int(x) for x in (args.requests or (STATIC_REQUESTS if static else "24,64,128,128")).split(",")]
    if len(counts) != len(levels_c):
        ap.error(f"--requests needs {len(levels_c)} numbers")
    table = pd.read_parquet(args.data)
    distinct = table["prompt"].astype(str).drop_duplicates().tolist()
    rng = np.random.default_rng(args.seed)
    need = sum(counts) + 8
    if static:
        chosen = distinct_prompts(distinct, need, rng)
    else:
        chosen = [distinct[i] for i in rng.choice(len(distinct), min(need, len(distinct)), replace=False)]
    load_avg_before = load_avg()
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp_s:
        tmp = Path(tmp_s)
        env = env_for(tmp)
        os.environ.update({k: env[k] for k in ("MLFLOW_TRACKING_URI", "MLFLOW_DISABLE_TELEMETRY")})
        if static:
            from causal_router.features.encoders import resolve_encoder

            enc = resolve_encoder("static")
            fit_prompts = distinct  # the router learns from the table; requests may carry suffixed copies
            t0 = time.perf_counter()
            X = enc.encode(fit_prompts)
            offline = {"prompts": len(fit_prompts), "seconds": time.perf_counter() - t0, "encoder": enc.key}
            offline["throughput"] = len(fit_prompts) / offline["seconds"]
            print(f"static encoder in this process: {offline['throughput']:.0f} prompts/s", flush=True)
            offline.update(floor(enc, fit_prompts))
            register_router(table, fit_prompts, X, enc.key, tmp)
        else:
            offline = offline_embed(chosen, tmp, env)
            print(f"offline: {offline['output']}", flush=True)
            register_router(table, chosen, *default_features(chosen, offline["cache"]), tmp)
        project = tmp / "project"
        project.mkdir()
        (project / "params.yaml").write_text("serve:\n  explore: 0.1\n  floor: 0.01\n  seed: 0\n"
                                             f"  batch_window_ms: 5\n  max_batch: {args.max_batch}\n")
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "causal_router.cli", "serve", "--port", str(port),
                                   "--model-uri", f"models:/{NAME}@champion", "--workers", str(args.workers)],
                                  cwd=project, env=env, stdout=subprocess.DEVNULL,
                                  stderr=open(tmp / "server.log", "w"))
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
            # warm-up: loads the encoder (every worker, with several)
            asyncio.run(run_level(url, chosen[:8], 4 * args.workers))
            levels, start = [], 8
            for c, n in zip(levels_c, counts):
                cpu0, own0 = cpu_seconds(server.pid), time.process_time()
                res = asyncio.run(run_level(url, chosen[start:start + n], c, args.max_seconds))
                start += n
                # CPU of the server and of this load generator, as a share of one core over the level
                res["server_cpu_share"] = (cpu_seconds(server.pid) - cpu0) / res["seconds"]
                res["generator_cpu_share"] = (time.process_time() - own0) / res["seconds"]
                res["server_rss_mib"] = server_rss(server.pid).get("VmRSS")
                res["load_avg_after"] = load_avg()
                levels.append(res)
                print(f"concurrency {c}: {res['throughput']:.1f} req/s, p50 {res['p50_ms']:.1f} ms, "
                      f"p99 {res['p99_ms']:.1f} ms, errors {res['errors']}, load {res['load_avg_after'][0]}, "
                      f"server CPU {res['server_cpu_share']:.2f} cores, generator {res['generator_cpu_share']:.2f}",
                      flush=True)
            peak = server_rss(server.pid).get("VmHWM")
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
    result = {"cpu": cpu_model(), "cpus": os.cpu_count(), "load_avg_before": load_avg_before,
              "load_avg_after": load_avg(), "python": platform.python_version(), "offline": offline,
              "levels": levels, "server_peak_rss_mib": peak, "requests": counts, "lam": LAM,
              "encoder": args.encoder or "default", "workers": args.workers, "max_batch": args.max_batch,
              "max_seconds": args.max_seconds,
              "code": _code_path(Path(causal_router.__file__).resolve().parents[1]),  # the src/ served
              "command": "python -m benchmarks.serve_load" + (" --encoder static" if static else "")
              + (f" --workers {args.workers}" if args.workers > 1 else "")
              + (f" --max-batch {args.max_batch}" if args.max_batch != 64 else "")
              + (f" --tag {args.tag}" if args.tag else "")
              + (f" --levels {args.levels}" if args.levels else "") + (f" --requests {args.requests}" if args.requests
                                                                        else "")}
    at16 = next((r for r in levels if r["concurrency"] == 16), None)
    if not static and at16 is not None:
        result["ratio_c16_to_offline"] = at16["throughput"] / offline["throughput"]
    stem = "serve_load" + ("_static" if static else "") + (f"_{args.tag}" if args.tag else "")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str))
    (args.out / f"{stem}.md").write_text(report_static(result) if static else report(result))
    print((args.out / f"{stem}.md").read_text())


def _code_path(src: Path) -> str:
    """The served ``src/`` folder, relative to the repository when inside it (committed results name no
    machine's paths), else its last two parts (a baseline tree's, e.g. ``before/src``)."""
    root = Path(__file__).resolve().parents[1]
    try:
        return str(src.relative_to(root))
    except ValueError:
        return str(Path(*src.parts[-2:]))


def server_rss(pid: int) -> dict:
    """The server's RSS (MiB), its worker processes' included (``serve --workers N``)."""
    out = rss_mib(pid)
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    for k in kids:
        for key, v in rss_mib(int(k)).items():
            out[key] = out.get(key, 0) + v
    return out


def report_static(r: dict) -> str:
    off = r["offline"]
    goal64 = next((x for x in r["levels"] if x["concurrency"] == 64), None)
    goal1 = next((x for x in r["levels"] if x["concurrency"] == 1), None)
    lost = sum(x["lost"] for x in r["levels"])
    lines = [
        f"# Serving under load, static encoder (`{r['command']}`)",
        "",
        f"CPU: {r['cpu']} ({r['cpus']} logical cores), Python {r['python']}. **Shared machine**: the load "
        "generator (one Python process, raw asyncio HTTP/1.1 keep-alive connections over loopback) runs on the "
        "same 2 cores as the server, and other jobs ran at the same time: load average "
        f"{r['load_avg_before'][0]:.1f} before, {r['load_avg_after'][0]:.1f} after (per level below).",
        "",
        f"Code served: `{r.get('code', '?')}`. "
        f"Server: `causal-router serve --workers {r['workers']}`, encoder `{off['encoder']}` (the router's own; "
        f"{off['throughput']:.0f} prompts/s in the benchmark's process on {off['prompts']} RouterBench prompts), "
        "a ridge `dr-regress` router on those features, exploration 0.1 (thompson), micro-batching window 5 ms "
        f"(at most {r.get('max_batch', 64)} prompts), SQLite decision log (WAL, synchronous=FULL: each micro-batch "
        "committed before its "
        "responses). Requests: one RouterBench prompt each (mean ~1,500 characters; distinct: the table's prompts, "
        f"then numbered copies), a fixed count per level and at most {r['max_seconds']:.0f} s of sending.",
        "",
        "| concurrency | requests | sent | errors | lost | throughput (req/s) | p50 (ms) | p95 (ms) | p99 (ms) "
        "| mean batch | server RSS (MiB) | server CPU (cores) | generator CPU (cores) | load avg after |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for x in r["levels"]:
        lines.append(f"| {x['concurrency']} | {x['requests']} | {x['sent']} | {x['errors']} | {x['lost']} | "
                     f"{x['throughput']:.0f} | {x['p50_ms']:.1f} | {x['p95_ms']:.1f} | {x['p99_ms']:.1f} | "
                     f"{x['mean_batch']:.1f} | {x['server_rss_mib'] or float('nan'):.0f} | "
                     f"{x['server_cpu_share']:.2f} | {x['generator_cpu_share']:.2f} | {x['load_avg_after'][0]:.1f} |")
    lines += ["", f"Server peak RSS: {r['server_peak_rss_mib'] or float('nan'):.0f} MiB. Lost: acknowledged "
              "decisions missing from the decision log after the run. Server and generator CPU: their CPU "
              "seconds over the level's wall time (1.00 = one core busy)."]
    if "sqlite_commit_p50_ms" in off:
        lines += ["", "The floor of a lone request, measured in the benchmark's process: the static encoder on one "
                  f"RouterBench prompt p50 {off['encode_one_p50_ms']:.1f} ms, one durable commit of one decision "
                  f"to a SQLite log (synchronous=FULL, an fsync) p50 {off['sqlite_commit_p50_ms']:.1f} ms."]
    if goal64 and goal1:
        lines += ["", "Goals (issue 33): at least 1,000 decisions/s at concurrency 64: "
                  f"**{goal64['throughput']:.0f}/s, {'met' if goal64['throughput'] >= 1000 else 'missed'}**; "
                  f"p50 at most 5 ms at concurrency 1: **{goal1['p50_ms']:.1f} ms, "
                  f"{'met' if goal1['p50_ms'] <= 5 else 'missed'}**; nothing lost: "
                  f"**{'yes' if lost == 0 else f'NO ({lost})'}**."]
    lines += ["", f"Reproduce: `.venv/bin/{r['command']}`.", ""]
    return "\n".join(lines)


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
        "Throughput at concurrency 16 / offline embedding throughput: "
        f"**{r.get('ratio_c16_to_offline', float('nan')):.2f}** "
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
