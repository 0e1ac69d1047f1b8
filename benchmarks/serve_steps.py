"""The routing service's own work per request, in-process, for several source trees side by side.

What ``benchmarks/serve_load.py`` cannot separate on a shared machine: the CPU and time of
``RouteService.handle`` (one lone request; a micro-batch of 64 one-prompt requests) and of the whole
ASGI app (``POST /v1/route`` through the middlewares, FastAPI and the micro-batcher; no sockets, no
HTTP parsing) at concurrency 1 and 64, with the static encoder, a ridge ``dr-regress`` router on its
features and a SQLite decision log (synchronous=FULL). Each source tree (``--src``: a folder holding
``causal_router``, e.g. ``git archive``'d commits) runs in its own subprocess, the trees interleaved
``--rounds`` times; the medians are reported with ratios to the first tree.

    .venv/bin/python -m benchmarks.serve_steps --src before=/tmp/src-main --src after=src

Results: ``benchmarks/results/serve_load/serve_steps[_TAG].{md,json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import results_dir, table_path
from .serve_load import cpu_model

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("handle_1_ms", "handle_1_cpu_ms", "handle_64_ms", "handle_64_cpu_ms", "asgi_c1_ms", "asgi_c64_cpu_ms",
           "asgi_c64_rps")
HIGHER = ("asgi_c64_rps",)  # higher is better (the others: lower)


def _service_parts(d: str, n_fit: int = 400):
    import pandas as pd
    from sklearn.linear_model import Ridge

    from causal_router.features.encoders import resolve_encoder
    from causal_router.policy.routers import DRRegressRouter
    from causal_router.serving.model import ServedModel
    from causal_router.serving.store import DecisionStore

    table = pd.read_parquet(table_path("routerbench_subset"))
    prompts = table["prompt"].astype(str).drop_duplicates().tolist()
    models = sorted(table["model"].unique())
    enc = resolve_encoder("static")
    X = enc.encode(prompts[:n_fit])
    rng = np.random.default_rng(0)
    router = DRRegressRouter(alpha=10.0)
    router.n_arms_ = len(models)
    router.quality_ = Ridge(alpha=10.0).fit(X, rng.uniform(size=(n_fit, len(models))))
    router.cost_ = Ridge(alpha=10.0).fit(X, rng.uniform(0, 1e-3, size=(n_fit, len(models))))
    model = ServedModel("bench", "1", models, router, (0.0, 100.0), 0.25, enc.key)

    class Holder:
        current, _on_change = model, None

        def start(self):
            pass

        def stop(self):
            pass

    return prompts, enc, Holder(), DecisionStore(f"sqlite:///{d}/decisions.db")


def measure(n: int) -> dict:
    """One tree's figures (run in a subprocess whose ``causal_router`` is that tree's)."""
    from causal_router.serving.api import create_app
    from causal_router.serving.service import RouteItem, RouteService
    from causal_router.serving.settings import ServeSettings

    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="serve-steps-") as d:
        prompts, enc, holder, store = _service_parts(d)
        svc = RouteService(ServeSettings(explore=0.1, seed=0), holder, store, enc, np.random.default_rng(0))
        k, t1, c1, t64, c64 = 0, [], [], [], []
        for i in range(n + 3):
            w0, p0 = time.perf_counter(), time.process_time()
            svc.handle([RouteItem([prompts[k % len(prompts)]], 10.0, 0.1, "r")])
            w1, p1 = time.perf_counter(), time.process_time()
            svc.handle([RouteItem([prompts[(k + 1 + j) % len(prompts)]], 10.0, 0.1, "r") for j in range(64)])
            w2, p2 = time.perf_counter(), time.process_time()
            k += 65
            if i >= 3:
                t1.append(w1 - w0), c1.append(p1 - p0), t64.append(w2 - w1), c64.append(p2 - p1)
        med = lambda v: float(np.median(v)) * 1000  # noqa: E731
        out.update(handle_1_ms=med(t1), handle_1_cpu_ms=med(c1), handle_64_ms=med(t64), handle_64_cpu_ms=med(c64))
        store.close()
    with tempfile.TemporaryDirectory(prefix="serve-steps-") as d:
        prompts, enc, holder, store = _service_parts(d)
        app = create_app(ServeSettings(explore=0.1, seed=0, poll_seconds=0), holder, store, enc)
        out.update(asyncio.run(_asgi(app, prompts, n)))
    return out


async def _post(app, prompt: str, i: int) -> None:
    body = json.dumps({"prompts": [prompt], "lam": 10.0}).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/route", "raw_path": b"/v1/route", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 10000 + i % 64), "server": ("127.0.0.1", 8000)}
    sent, status = False, []

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # no disconnect while the response is under way

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    if status != [200]:
        raise RuntimeError(f"POST /v1/route answered {status}")


async def _asgi(app, prompts: list[str], n: int) -> dict:
    async with app.router.lifespan_context(app):
        for j in range(8):
            await _post(app, prompts[j], j)
        lat, k = [], 8
        for _ in range(n):
            t0 = time.perf_counter()
            await _post(app, prompts[k % len(prompts)], k)
            lat.append(time.perf_counter() - t0)
            k += 1
        rounds = max(3, n // 4)
        p0, w0 = time.process_time(), time.perf_counter()
        for _ in range(rounds):
            await asyncio.gather(*(_post(app, prompts[(k + j) % len(prompts)], k + j) for j in range(64)))
            k += 64
        cpu = (time.process_time() - p0) / (64 * rounds)
        rps = 64 * rounds / (time.perf_counter() - w0)
    return {"asgi_c1_ms": float(np.median(lat)) * 1000, "asgi_c64_cpu_ms": cpu * 1000, "asgi_c64_rps": rps}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", action="append", default=[], help="NAME=FOLDER (a tree's src/); repeatable")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved runs of each tree")
    ap.add_argument("--n", type=int, default=30, help="timed calls per figure and run")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # the subprocess's own run
    ap.add_argument("--out", type=Path, default=results_dir("serve_load"))
    ap.add_argument("--tag", default="", help="suffix of the result files (serve_steps_TAG.md)")
    args = ap.parse_args(argv)
    if args.one:
        print("RESULT " + json.dumps(measure(args.n)), flush=True)
        return 0
    trees = [s.split("=", 1) for s in args.src] or [["current", str(ROOT / "src")]]
    runs: dict = {name: [] for name, _ in trees}
    load_before = list(os.getloadavg())
    for r in range(args.rounds):
        for name, folder in trees:
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(folder).resolve()), str(ROOT)]))
            res = subprocess.run([sys.executable, "-m", "benchmarks.serve_steps", "--one", "--n", str(args.n)],
                                 env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
            line = next((x for x in res.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                raise SystemExit(f"{name} failed:\n{res.stderr[-3000:]}")
            runs[name].append(json.loads(line[7:]))
            print(f"round {r} {name}: {line[7:]}", flush=True)
    medians = {name: {m: float(np.median([x[m] for x in v])) for m in METRICS} for name, v in runs.items()}
    result = {"trees": {name: _shown(folder) for name, folder in trees}, "rounds": args.rounds, "n": args.n,
              "load_avg": list(os.getloadavg()), "load_avg_before": load_before, "cpu": cpu_model(),
              "cpus": os.cpu_count(),
              "runs": runs, "medians": medians}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "serve_steps" + (f"_{args.tag}" if args.tag else "")
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
    lines = ["# The service's own work per request, side by side (`python -m benchmarks.serve_steps`)", "",
             f"Medians of {r['rounds']} interleaved runs per tree ({r['n']} timed calls each). CPU: "
             f"{r.get('cpu', '?')} ({r.get('cpus', '?')} logical cores), shared with other jobs: load average "
             f"{r.get('load_avg_before', [float('nan')])[0]:.1f} before, {r['load_avg'][0]:.1f} at the end. "
             "Static encoder, ridge `dr-regress` router, SQLite log (synchronous=FULL). `handle`: "
             "`RouteService.handle` on one request and on a "
             "micro-batch of 64 one-prompt requests (wall and CPU ms per call); `asgi`: `POST /v1/route` "
             "through the whole ASGI app in-process (no sockets): wall ms of one lone request, and CPU ms per "
             "request at concurrency 64, and its throughput (requests/s, wall). Ratio: the first tree's figure / this "
             "one's, inverted for the throughput (above 1: faster).", "",
             "| tree | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
    for name in names:
        m = r["medians"][name]
        lines.append(f"| {name} | " + " | ".join(
            f"{m[k]:.2f} ({(m[k] / base[k] if k in HIGHER else base[k] / m[k]):.2f}x)" for k in METRICS) + " |")
    lines += ["", "Trees: " + ", ".join(f"`{k}` = {_shown(v)}" for k, v in r["trees"].items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
