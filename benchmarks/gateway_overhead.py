"""Latency the gateway (``causal-router serve --gateway``) adds over calling the upstream directly.

1. A router on the default encoder's features (a ridge ``dr-regress`` router fitted on random
   features: its own compute is negligible beside the encoder's) is registered in a temporary
   MLflow store as ``causal-router-bench@champion`` for three models.
2. A stub OpenAI-compatible upstream (:mod:`causal_router.integrations.stub_upstream`) runs in its
   own process and answers every chat completion in a fixed 50 ms.
3. ``causal-router serve --gateway`` runs in its own process, once per ``serve.gateway_client``
   (``direct`` and ``litellm``; one worker each, the default encoder or ``--encoder static``,
   exploration on, SQLite decision log), its three models all on that upstream.
4. At concurrency 1, 16 and 64, the same number of requests (distinct prompts) go to the upstream
   directly and through each gateway in turn; reported: p50 and p99 of each and their difference (the
   overhead), and the encoder's own time for one prompt (p50, measured in this process).
5. Nothing lost: every answered gateway request's decision id is in the decision log with its
   recorded outcome.
6. The floor: LiteLLM's SDK call against a plain HTTP post to the same upstream, and one durable
   commit to a SQLite decision log, measured side by side in this process (:func:`sdk_floor`).

Run from the repository root (a few minutes on 2 busy cores)::

    .venv/bin/python -m benchmarks.gateway_overhead [--requests 200] [--encoder static] [--clients direct,litellm]

Results: ``benchmarks/results/gateway_overhead/gateway_overhead[_static].{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import drive, results_dir

ROOT = Path(__file__).resolve().parents[1]
OUT = results_dir("gateway_overhead")
NAME = "causal-router-bench"
MODELS = ["bench-a", "bench-b", "bench-c"]
LAM = 0.0
DELAY_MS = 50.0
LEVELS = (1, 16, 64)
CLIENTS = ("direct", "litellm")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(tmp: Path) -> dict:
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}",
               LITELLM_LOCAL_MODEL_COST_MAP="True", MLFLOW_DISABLE_TELEMETRY="true", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", BENCH_UPSTREAM_KEY="unused-local-key",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("CAUSAL_ROUTER_API_TOKEN", None)
    env.pop("CAUSAL_ROUTER_DECISIONS_URI", None)
    return env


def register_router(tmp: Path, dim: int, key: str) -> None:
    import mlflow
    from sklearn.linear_model import Ridge

    from causal_router.policy.routers import DRRegressRouter
    from causal_router.policy.routerset import RouterSet
    from causal_router.registry import tracking
    from causal_router.registry.pyfunc import log_router_model

    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, dim)).astype(np.float32)
    router = DRRegressRouter(alpha=10.0)
    router.n_arms_ = len(MODELS)
    router.quality_ = Ridge(alpha=10.0).fit(X, rng.uniform(size=(64, len(MODELS))))
    router.cost_ = Ridge(alpha=10.0).fit(X, rng.uniform(0, 1e-3, size=(64, len(MODELS))))
    rs = RouterSet(MODELS, [LAM], {"dr-regress": router}, key, {"n_features": dim, "tokens_per_char": 0.25})
    d = rs.save(tmp / "routers")
    os.environ["MLFLOW_TRACKING_URI"] = env_for(tmp)["MLFLOW_TRACKING_URI"]
    tracking.configure(tmp)
    with mlflow.start_run(run_name="gateway-overhead-benchmark"):
        info = log_router_model(d, "bench", "dr-regress", lam=LAM, registered_model_name=NAME)
    mlflow.MlflowClient().set_registered_model_alias(NAME, "champion", info.registered_model_version)


def wait_http(url: str, proc, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up in {timeout:.0f} s")


async def run_level(url: str, concurrency: int, n: int, gateway: bool, tag: str) -> dict:
    async def send(client, p):
        body = {"model": "causal-router" if gateway else MODELS[0], "messages": [{"role": "user", "content": p}]}
        if gateway:
            body["causal_router"] = {"lam": LAM}
        r = await client.post("/v1/chat/completions", json=body)
        if r.status_code != 200:
            return False, f"{r.status_code} {r.text[:200]}"
        return True, r.headers.get("x-causal-router-decision-id")

    prompts = [f"{tag} request {i}: summarise the benefits of routing prompt number {i} to a cheap model"
               for i in range(n)]
    lat, ids, errors, wall = await drive(url, prompts, concurrency, send)
    ms = np.asarray(lat) * 1000
    return {"n": n, "ok": len(lat), "errors": len(errors), "first_errors": errors[:3],
            "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
            "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
            "throughput_rps": len(lat) / wall, "answered": [i for i in ids if i] if gateway else []}


def encoder_time(enc, n: int = 40) -> float:
    enc.encode(["warm up"])
    t = []
    for i in range(n):
        t0 = time.perf_counter()
        enc.encode([f"encoder timing prompt {i}: summarise the benefits of routing to a cheap model"])
        t.append(time.perf_counter() - t0)
    return float(np.percentile(np.asarray(t) * 1000, 50))


async def sdk_floor(up_url: str, n: int = 100) -> dict:
    """What the gateway cannot avoid, measured side by side in this process against the same upstream:
    LiteLLM's SDK call over a plain HTTP post (p50 of each, sequential), and one durable commit of one
    decision row to a SQLite decision log (``synchronous=FULL``; a gateway call makes two: the decision
    before the call, the outcome after)."""
    import httpx

    from causal_router.serving.upstream import litellm_module

    litellm = litellm_module()
    body = {"model": MODELS[0], "messages": [{"role": "user", "content": "floor"}]}
    params = {"model": f"openai/{MODELS[0]}", "api_base": up_url + "/v1", "api_key": "unused-local-key"}
    plain, sdk = [], []
    async with httpx.AsyncClient(base_url=up_url) as client:
        for i in range(n + 5):  # interleaved, the first 5 of each a warm-up
            t0 = time.perf_counter()
            await client.post("/v1/chat/completions", json=body)
            t1 = time.perf_counter()
            await litellm.acompletion(messages=body["messages"], **params)
            t2 = time.perf_counter()
            if i >= 5:
                plain.append(t1 - t0)
                sdk.append(t2 - t1)

    def p50(v):
        return float(np.percentile(np.asarray(v) * 1000, 50))

    return {"http_post_p50_ms": p50(plain), "litellm_acompletion_p50_ms": p50(sdk),
            "litellm_sdk_ms": p50(sdk) - p50(plain), "sqlite_commit_p50_ms": commit_time()}


def commit_time(n: int = 50) -> float:
    from datetime import UTC, datetime

    from causal_router.serving.store import DecisionStore

    with tempfile.TemporaryDirectory(prefix="gateway-bench-commit-") as d:
        store = DecisionStore(f"sqlite:///{Path(d) / 'decisions.db'}")
        t = []
        for i in range(n + 5):
            row = {"decision_id": f"c{i:06d}", "created_at": datetime.now(UTC), "request_id": f"r{i}", "prompt": "p",
                   "model": MODELS[0], "propensity": 1.0, "lam": LAM, "explore": 0.0, "router_name": NAME,
                   "router_version": "1", "input_tokens": None}
            t0 = time.perf_counter()
            store.add_decisions([row])
            if i >= 5:
                t.append(time.perf_counter() - t0)
        store.close()
    return float(np.percentile(np.asarray(t) * 1000, 50))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=200, help="requests per level and path (default 200)")
    p.add_argument("--encoder", default=None,
                   help="the router's encoder: the default (all-MiniLM-L6-v2) or 'static' (the fast one)")
    p.add_argument("--clients", type=lambda v: v.split(","), default=list(CLIENTS),
                   help="the gateways' serve.gateway_client values, each its own server (default direct,litellm)")
    args = p.parse_args(argv)
    from causal_router.features.encoders import resolve_encoder
    from causal_router.features.hardware import cpu_model
    from causal_router.serving.store import DecisionStore

    enc = resolve_encoder(args.encoder)
    enc_ms = encoder_time(enc)
    procs = []
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as d:
        tmp = Path(d)
        register_router(tmp, int(enc.dim), enc.key)
        env = env_for(tmp)
        up_port = free_port()
        up_url = f"http://127.0.0.1:{up_port}"
        entries = [{"model_name": m, "litellm_params": {
            "model": f"openai/{m}", "api_base": up_url + "/v1", "api_key": "os.environ/BENCH_UPSTREAM_KEY",
            "input_cost_per_token": 1e-7 * (i + 1), "output_cost_per_token": 2e-7 * (i + 1)}}
            for i, m in enumerate(MODELS)]
        (tmp / "gateway.yaml").write_text(json.dumps({"model_list": entries}))
        gateways = {}  # serve.gateway_client -> URL: both served at once, measured in turn at each level
        try:
            procs.append(subprocess.Popen([sys.executable, "-m", "causal_router.integrations.stub_upstream",
                                           "--port", str(up_port), "--delay-ms", str(DELAY_MS)], env=env, cwd=tmp))
            for kind in args.clients:
                port = free_port()
                # poll_seconds as deployed (10 s): 0 would also re-read the log's outcome counts on every request
                (tmp / f"params-{kind}.yaml").write_text(
                    f"serve:\n  explore: 0.1\n  seed: 0\n  poll_seconds: 10\n  gateway_client: {kind}\n"
                    f"  decisions_uri: sqlite:///{tmp / f'decisions-{kind}.db'}\n")
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "causal_router.cli", "serve", "--port", str(port), "--model-uri",
                     f"models:/{NAME}@champion", "--params", str(tmp / f"params-{kind}.yaml"),
                     "--gateway", str(tmp / "gateway.yaml")], env=env, cwd=tmp))
                gateways[kind] = f"http://127.0.0.1:{port}"
            wait_http(up_url + "/docs", procs[0])
            for proc, url in zip(procs[1:], gateways.values(), strict=True):
                wait_http(url + "/healthz", proc)
                asyncio.run(run_level(url, 4, 8, True, "warm"))  # LiteLLM's first call, the encoder's first batch
            asyncio.run(run_level(up_url, 4, 8, False, "warm"))
            floor = asyncio.run(sdk_floor(up_url))
            levels = []
            for c in LEVELS:
                direct = asyncio.run(run_level(up_url, c, args.requests, False, f"direct-{c}"))
                direct.pop("answered")
                for kind, url in gateways.items():
                    via = asyncio.run(run_level(url, c, args.requests, True, f"gateway-{kind}-{c}"))
                    answered = via.pop("answered")
                    store = DecisionStore(f"sqlite:///{tmp / f'decisions-{kind}.db'}")
                    logged = set(store.frame("decisions")["decision_id"]) & set(store.frame("outcomes")["decision_id"])
                    store.close()
                    levels.append({"concurrency": c, "client": kind, "direct": direct, "gateway": via,
                                   "added_p50_ms": via["p50_ms"] - direct["p50_ms"],
                                   "added_p99_ms": via["p99_ms"] - direct["p99_ms"],
                                   "answered_in_log": sum(a in logged for a in answered), "answered": len(answered)})
                    print(f"concurrency {c}, {kind}: direct p50 {direct['p50_ms']:.1f} ms, gateway p50 "
                          f"{via['p50_ms']:.1f} ms, added {levels[-1]['added_p50_ms']:.1f} ms "
                          f"(p99 {levels[-1]['added_p99_ms']:.1f} ms)", flush=True)
        finally:
            for pr in procs:
                pr.terminate()
            for pr in procs:
                try:
                    pr.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    pr.kill()
    result = {"cpu": cpu_model(), "cores": os.cpu_count(), "load_avg": list(os.getloadavg()),
              "python": platform.python_version(), "encoder": enc.key, "encoder_p50_ms_one_prompt": enc_ms,
              "upstream_delay_ms": DELAY_MS, "requests_per_level": args.requests, "levels": levels, "floor": floor,
              "nothing_lost": all(lv["answered_in_log"] == lv["answered"] for lv in levels),
              "clients": list(args.clients),
              "command": f"python -m benchmarks.gateway_overhead --requests {args.requests}"
                         + (f" --encoder {args.encoder}" if args.encoder else "")
                         + ("" if args.clients == list(CLIENTS) else f" --clients {','.join(args.clients)}")}
    OUT.mkdir(parents=True, exist_ok=True)
    stem = "gateway_overhead" + (f"_{args.encoder.replace(':', '_')}" if args.encoder else "")
    (OUT / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (OUT / f"{stem}.md").write_text(report(result))
    print(report(result))
    return 0 if result["nothing_lost"] else 1


def report(r: dict) -> str:
    lines = ["# Gateway overhead", "",
             f"`{r['command']}` on {r['cpu']} ({r['cores']} cores, load average {r['load_avg'][0]:.1f} at the end; "
             f"shared machine). Upstream: a stub answering in a fixed {r['upstream_delay_ms']:.0f} ms, own process; "
             f"gateways: `causal-router serve --gateway`, one per `serve.gateway_client` "
             f"({', '.join(r.get('clients', ['litellm']))}), one worker each, own processes, measured in turn at "
             f"each level against the same upstream; encoder `{r['encoder']}` (one prompt: p50 "
             f"{r['encoder_p50_ms_one_prompt']:.1f} ms in the benchmark's process).", "",
             "| concurrency | gateway_client | direct p50 ms | gateway p50 ms | added p50 ms | direct p99 ms | "
             "gateway p99 ms | added p99 ms | gateway req/s | errors | answered decisions in the log |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for lv in r["levels"]:
        d, g = lv["direct"], lv["gateway"]
        lines.append(f"| {lv['concurrency']} | {lv.get('client', 'litellm')} | {d['p50_ms']:.1f} | {g['p50_ms']:.1f} | "
                     f"{lv['added_p50_ms']:.1f} | {d['p99_ms']:.1f} | {g['p99_ms']:.1f} | {lv['added_p99_ms']:.1f} | "
                     f"{g['throughput_rps']:.1f} | {d['errors']} + {g['errors']} | "
                     f"{lv['answered_in_log']}/{lv['answered']} |")
    f = r["floor"]
    lines += ["", f"Nothing lost: {'yes' if r['nothing_lost'] else 'NO'} (every answered request's decision and "
              "outcome are in its gateway's decision log).", "",
              "Measured side by side in the benchmark's process against the same upstream: LiteLLM's SDK call "
              f"(`litellm.acompletion`) p50 {f['litellm_acompletion_p50_ms']:.1f} ms against a plain HTTP post's "
              f"{f['http_post_p50_ms']:.1f} ms, so the SDK itself costs {f['litellm_sdk_ms']:.1f} ms a call (the "
              "`litellm` client pays it, the `direct` one does not); one durable commit to the SQLite decision log "
              f"(`synchronous=FULL`) p50 {f['sqlite_commit_p50_ms']:.1f} ms, two per call (the decision before it, "
              "the outcome after)."]
    for lv in r["levels"]:
        if lv["concurrency"] != 1:
            continue
        sdk = f["litellm_sdk_ms"] if lv.get("client", "litellm") == "litellm" else 0.0
        rest = lv["added_p50_ms"] - sdk - 2 * f["sqlite_commit_p50_ms"] - r["encoder_p50_ms_one_prompt"]
        lines.append(f"- `{lv.get('client', 'litellm')}` at concurrency 1: {rest:.1f} ms of the "
                     f"{lv['added_p50_ms']:.1f} ms added are the gateway's own work (the extra hop, HTTP, routing, "
                     "JSON, thread hand-offs).")
    return "\n".join(lines + [""])


if __name__ == "__main__":
    sys.exit(main())
