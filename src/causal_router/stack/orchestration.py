"""The stack's Prefect: the server on PostgreSQL, the process work pool and the deployments of
``infra/prefect.yaml``, and the worker that executes deployment runs (scheduled ones included)."""

from __future__ import annotations

import subprocess

from .processes import StackError, http_ok, tool, wait

POOL = "causal-router-process"


def start_prefect(stack, timeout: float) -> None:
    port = stack.ports()["prefect"]
    env = stack.env(PREFECT_API_DATABASE_CONNECTION_URL=stack.pg_uri("prefect", "asyncpg"),
                    # create the scheduled runs of the (short) e2e interval quickly
                    PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5")
    env.pop("PREFECT_API_URL")
    argv = [tool("prefect"), "server", "start", "--host", stack.host, "--port", str(port)]
    pid = stack.spawn("prefect", argv, env, port)
    wait(lambda: http_ok(f"http://{stack.host}:{port}/api/health"), timeout, "Prefect server",
          stack.log("prefect"), pid)


def prefect_cli(stack, *args: str, timeout: float = 300) -> str:
    out = subprocess.run([tool("prefect"), "--no-prompt", *args], cwd=stack.root, env=stack.env(),
                         capture_output=True, text=True, timeout=timeout)
    with open(stack.log("setup"), "a") as log:
        log.write(f"$ prefect {' '.join(args)}\n{out.stdout}{out.stderr}\n")
    if out.returncode:
        raise StackError(f"prefect {' '.join(args)} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return out.stdout


def setup_prefect(stack) -> None:
    """The process work pool and the deployments of infra/prefect.yaml (idempotent)."""
    import httpx

    api = stack.client_env()["PREFECT_API_URL"]
    if httpx.get(f"{api}/work_pools/{POOL}", timeout=10).status_code == 404:
        prefect_cli(stack, "work-pool", "create", POOL, "--type", "process")
    prefect_cli(stack, "deploy", "--all", "--prefect-file", str(stack.root / "infra" / "prefect.yaml"))


def start_worker(stack, timeout: float) -> None:
    argv = [tool("prefect"), "worker", "start", "--pool", POOL, "--type", "process", "--name",
            "causal-router-worker", "--limit", "1"]
    log = stack.log("worker")
    offset = log.stat().st_size if log.exists() else 0  # the log is appended to across restarts

    def started() -> bool:
        with open(log, "rb") as f:
            f.seek(offset)
            return b"started" in f.read().lower()

    pid = stack.spawn("worker", argv, stack.env())
    wait(lambda: started() or worker_registered(stack), timeout, "Prefect worker", log, pid)


def worker_registered(stack) -> bool:
    import httpx

    api = stack.client_env()["PREFECT_API_URL"]
    try:
        r = httpx.post(f"{api}/work_pools/{POOL}/workers/filter", json={}, timeout=5)
        return r.status_code == 200 and any(w.get("status") == "ONLINE" for w in r.json())
    except httpx.HTTPError:
        return False
