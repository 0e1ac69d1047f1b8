"""The production-shaped stack on one machine, natively: ``python -m causal_router.stack.stack up|down|status|env``.

PostgreSQL (databases ``mlflow``, ``prefect``, ``decisions``), an MLflow server with a served
artifact store, a Prefect server with the project's process work pool, a worker and the
deployments of ``infra/prefect.yaml``, a Dask scheduler with two workers, a stub OpenAI-compatible
upstream, and the routing service with its gateway on that upstream when ``causal-router serve``
exists (:mod:`.upstream`). Everything lives under ``<project>/.stack`` (git-ignored;
``$CAUSAL_ROUTER_STACK_DIR`` moves it):

    .stack/pgdata/            PostgreSQL data (initdb on first use)
    .stack/mlflow-artifacts/  the MLflow server's artifact store (--artifacts-destination)
    .stack/prefect-results/   Prefect result storage shared by flow runs, the worker and Dask workers
    .stack/run/NAME.json      PID (and its start time), port, command of each service
    .stack/run/NAME.log       its log
    .stack/stack.env          the client settings (``source .stack/stack.env``)
    .stack/gateway.yaml       the service's gateway file (LiteLLM model_list on the stub upstream)

``down`` stops exactly the recorded PIDs (each service's process group) and keeps the data;
``up`` again resumes on the same data. Ports are on loopback, chosen once (the usual port when
free, else any free one) and kept in ``run/ports.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ..settings.env import DECISIONS_ENV, RUNNER_ENV, dvc_remote, find_project_root
from .orchestration import POOL, setup_prefect, start_prefect, start_worker
from .postgres import DATABASES, start_postgres, stop_postgres
from .processes import StackError, free_port, http_ok, port_free, port_open, start_time, stop_group, tool, wait
from .upstream import KEY, KEY_ENV, start_upstream, write_gateway_file

__all__ = ["CHECKS", "DATABASES", "DIR_ENV", "POOL", "SERVE_URL_ENV", "SERVICES", "Stack", "StackError", "main"]

#: The usual port of each service (kept when free); 0: any free loopback port.
PREFERRED_PORTS = {"postgres": 5433, "mlflow": 5000, "prefect": 4200, "dask-scheduler": 8786, "upstream": 0,
                   "serve": 8000}
SERVICES = ("postgres", "mlflow", "prefect", "dask-scheduler", "dask-worker-1", "dask-worker-2", "worker",
            "upstream", "serve")
#: Short-lived processes ``make e2e`` starts (``make down`` stops them too if it was interrupted).
CHECKS = ("serve-reload-check",)
HOST_ENV = "CAUSAL_ROUTER_STACK_HOST"
DIR_ENV = "CAUSAL_ROUTER_STACK_DIR"
SERVE_URL_ENV = "CAUSAL_ROUTER_SERVE_URL"


class Stack:
    """The stack of one project (see the module docstring)."""

    def __init__(self, root: str | Path | None = None):
        found = Path(root).resolve() if root is not None else find_project_root()
        if found is None:
            raise StackError("not inside a causal-router project: run from the project folder")
        self.root = found
        self.dir = Path(os.environ.get(DIR_ENV) or self.root / ".stack").resolve()
        self.run = self.dir / "run"
        self.pgdata = self.dir / "pgdata"
        self.artifacts = self.dir / "mlflow-artifacts"
        self.results = self.dir / "prefect-results"
        self.host = os.environ.get(HOST_ENV, "127.0.0.1")
        self.as_postgres = os.geteuid() == 0  # PostgreSQL refuses to run as root

    # ---- bookkeeping -------------------------------------------------------------------------
    def ports(self) -> dict:
        path = self.run / "ports.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _choose_ports(self) -> dict:
        ports = self.ports()
        for name, preferred in PREFERRED_PORTS.items():
            current = ports.get(name)
            if current and (self.alive(name) or port_free(current, self.host)):
                continue
            ports[name] = preferred if preferred and port_free(preferred, self.host) else free_port(self.host)
        (self.run / "ports.json").write_text(json.dumps(ports, indent=2))
        return ports

    def record(self, name: str) -> dict | None:
        path = self.run / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def alive(self, name: str) -> bool:
        rec = self.record(name)
        return bool(rec) and start_time(rec["pid"]) == rec.get("start_time")

    def log(self, name: str) -> Path:
        return self.run / f"{name}.log"

    def save(self, name: str, pid: int, port: int | None, argv: list) -> None:
        rec = {"pid": pid, "start_time": start_time(pid), "port": port, "argv": argv,
               "log": str(self.log(name)), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (self.run / f"{name}.json").write_text(json.dumps(rec, indent=2))

    def spawn(self, name: str, argv: list, env: dict, port: int | None = None) -> int:
        with open(self.log(name), "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, cwd=self.root, start_new_session=True)
        self.save(name, proc.pid, port, argv)
        return proc.pid

    # ---- settings ----------------------------------------------------------------------------
    def pg_uri(self, db: str, driver: str = "psycopg") -> str:
        return f"postgresql+{driver}://postgres@{self.host}:{self.ports()['postgres']}/{db}"

    def client_env(self) -> dict:
        """The settings that point clients (CLI, flows, service) at this stack."""
        from ..registry.integrity import STATE_DIR_ENV

        p = self.ports()
        return {
            "MLFLOW_TRACKING_URI": f"http://{self.host}:{p['mlflow']}",
            "PREFECT_API_URL": f"http://{self.host}:{p['prefect']}/api",
            RUNNER_ENV: f"dask://{self.host}:{p['dask-scheduler']}",
            DECISIONS_ENV: self.pg_uri("decisions"),
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(self.results),
            "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
            SERVE_URL_ENV: f"http://{self.host}:{p['serve']}",
            # the registry's expected-state marker lives with the stack's data: wiping .stack/ starts afresh
            STATE_DIR_ENV: str(self.dir / "state"),
        }

    def env(self, **extra) -> dict:
        env = {**os.environ, **self.client_env(), **extra}
        # flows import `flows.*` and the project's code from the project folder
        env["PYTHONPATH"] = os.pathsep.join(x for x in (str(self.root / "src"), str(self.root),
                                                        os.environ.get("PYTHONPATH", "")) if x)
        env.setdefault("CAUSAL_ROUTER_TORCH_THREADS", "1")
        for k, v in {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "DVC_NO_ANALYTICS": "1",
                     "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "HF_HUB_OFFLINE": "1",
                     "TRANSFORMERS_OFFLINE": "1", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
                     "LITELLM_LOCAL_MODEL_COST_MAP": "True"}.items():
            env.setdefault(k, v)
        env["PREFECT_HOME"] = str(self.dir / "prefect-home")
        return env

    def write_env_file(self) -> Path:
        path = self.dir / "stack.env"
        path.write_text("".join(f"export {k}={v}\n" for k, v in self.client_env().items()))
        return path

    # ---- services ----------------------------------------------------------------------------
    def _start_postgres(self, timeout: float) -> None:
        start_postgres(self, timeout, DIR_ENV)

    def _start_mlflow(self, timeout: float) -> None:
        port = self.ports()["mlflow"]
        self.artifacts.mkdir(parents=True, exist_ok=True)
        argv = [tool("mlflow"), "server", "--backend-store-uri", self.pg_uri("mlflow"),
                "--artifacts-destination", self.artifacts.as_uri(), "--host", self.host, "--port", str(port),
                "--workers", "1"]
        pid = self.spawn("mlflow", argv, self.env(), port)
        wait(lambda: http_ok(f"http://{self.host}:{port}/health"), timeout, "MLflow server", self.log("mlflow"), pid)

    def _start_prefect(self, timeout: float) -> None:
        start_prefect(self, timeout)

    def _setup_prefect(self) -> None:
        setup_prefect(self)

    def _start_dask(self, timeout: float) -> None:
        port = self.ports()["dask-scheduler"]
        if not self.alive("dask-scheduler"):
            argv = [tool("dask"), "scheduler", "--host", self.host, "--port", str(port), "--no-dashboard"]
            pid = self.spawn("dask-scheduler", argv, self.env(), port)
            wait(lambda: port_open(self.host, port), timeout, "Dask scheduler", self.log("dask-scheduler"), pid)
        for name in ("dask-worker-1", "dask-worker-2"):
            if not self.alive(name):
                argv = [tool("dask"), "worker", f"tcp://{self.host}:{port}", "--name", name, "--nthreads", "1",
                        "--host", self.host, "--no-dashboard", "--local-directory", str(self.dir / "dask")]
                self.spawn(name, argv, self.env())
        wait(lambda: self.dask_workers() >= 2, timeout, "Dask workers", self.log("dask-worker-2"))

    def dask_workers(self) -> int:
        from distributed import Client

        try:
            with Client(f"tcp://{self.host}:{self.ports()['dask-scheduler']}", timeout=5) as c:
                return len(c.scheduler_info(n_workers=-1)["workers"])
        except (OSError, TimeoutError):
            return 0

    def _start_worker(self, timeout: float) -> None:
        start_worker(self, timeout)

    @staticmethod
    def serve_available() -> bool:
        """Whether this installation has ``causal-router serve`` (the routing service)."""
        try:
            out = subprocess.run([tool("causal-router"), "serve", "--help"], capture_output=True, timeout=120)
        except (StackError, subprocess.TimeoutExpired):
            return False
        return out.returncode == 0

    def champion_exists(self, name: str = "causal-router-interval") -> bool:
        """Whether the MLflow server has ``name@champion`` (the service loads it at start)."""
        import httpx

        url = f"{self.client_env()['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/registered-models/alias"
        try:
            return httpx.get(url, params={"name": name, "alias": "champion"}, timeout=10).status_code == 200
        except httpx.HTTPError:
            return False

    def _start_serve(self, timeout: float) -> bool:
        """``causal-router serve --gateway`` on the champion, its gateway on the stub upstream
        (:mod:`.upstream`); skipped (with the reason in run/serve.skipped) when the CLI has no
        ``serve`` or no champion exists yet (``make e2e`` starts it after the first promotion)."""
        reason = None
        if not self.serve_available():
            reason = "causal-router serve is not available in this installation"
        elif not self.champion_exists():
            reason = "no champion yet: make e2e (or make up after a promotion) starts it"
        if reason:
            (self.run / "serve.skipped").write_text(reason + "\n")
            return False
        (self.run / "serve.skipped").unlink(missing_ok=True)
        if not self.alive("upstream"):
            self._start_upstream(timeout)
        gateway = write_gateway_file(self)
        port = self.ports()["serve"]
        argv = [tool("causal-router"), "serve", "--host", self.host, "--port", str(port),
                "--params", str(self.root / "params.yaml"), "--gateway", str(gateway)]
        pid = self.spawn("serve", argv, self.env(**{KEY_ENV: KEY}), port)
        wait(lambda: http_ok(f"http://{self.host}:{port}/healthz"), timeout, "routing service",
              self.log("serve"), pid)
        return True

    def _start_upstream(self, timeout: float) -> None:
        start_upstream(self, timeout)

    def spawn_serve(self, name: str, model_uri: str, timeout: float = 240) -> str:
        """A further ``causal-router serve`` on ``model_uri`` and a free port, recorded as ``name``
        (one of :data:`CHECKS`); returns its URL once ``/healthz`` answers. Stop it with :meth:`stop`."""
        port = free_port(self.host)
        argv = [tool("causal-router"), "serve", "--host", self.host, "--port", str(port),
                "--model-uri", model_uri, "--params", str(self.root / "params.yaml")]
        pid = self.spawn(name, argv, self.env(), port)
        url = f"http://{self.host}:{port}"
        wait(lambda: http_ok(f"{url}/healthz"), timeout, name, self.log(name), pid)
        return url

    def stop(self, name: str, timeout: float = 30) -> None:
        """Stop one recorded process (not PostgreSQL) and forget it."""
        rec = self.record(name)
        if rec is None:
            return
        if self.alive(name):
            stop_group(rec["pid"], timeout)
        (self.run / f"{name}.json").unlink(missing_ok=True)

    def start_serve(self, timeout: float = 240) -> bool:
        """Start the routing service if it is not running (see :meth:`_start_serve`)."""
        return self.alive("serve") or self._start_serve(timeout)

    def _apply_dvc_remote(self) -> None:
        """``$CAUSAL_ROUTER_DVC_REMOTE`` becomes this clone's default DVC remote (.dvc/config.local)."""
        url = dvc_remote()
        if url and (self.root / ".dvc").is_dir():
            subprocess.run([tool("dvc"), "remote", "add", "--local", "--default", "--force", "team", url],
                           cwd=self.root, capture_output=True, check=True)
            print(f"{'dvc remote':15s} {url} (.dvc/config.local)", flush=True)

    # ---- commands ----------------------------------------------------------------------------
    def up(self, timeout: float = 240) -> None:
        """Start what is not running, in dependency order, each checked ready within ``timeout`` s."""
        for d in (self.run, self.results, self.dir / "dask", self.dir / "prefect-home"):
            d.mkdir(parents=True, exist_ok=True)
        self._choose_ports()
        self.write_env_file()
        self._apply_dvc_remote()
        steps = [("postgres", self._start_postgres), ("mlflow", self._start_mlflow),
                 ("prefect", self._start_prefect), ("dask-scheduler", self._start_dask)]
        for name, start in steps:
            if name == "postgres" or not self.alive(name):
                t0 = time.monotonic()
                start(timeout)
                print(f"{name:15s} ready ({time.monotonic() - t0:.1f}s)", flush=True)
            else:
                print(f"{name:15s} already running (pid {self.record(name)['pid']})", flush=True)
        if name == "dask-scheduler" and not (self.alive("dask-worker-1") and self.alive("dask-worker-2")):
            self._start_dask(timeout)
        t0 = time.monotonic()
        self._setup_prefect()
        print(f"{'deployments':15s} applied ({time.monotonic() - t0:.1f}s)", flush=True)
        for name, start in (("worker", self._start_worker), ("upstream", self._start_upstream),
                            ("serve", self._start_serve)):
            if self.alive(name):
                print(f"{name:15s} already running (pid {self.record(name)['pid']})", flush=True)
                continue
            t0 = time.monotonic()
            started = start(timeout)
            skipped = (self.run / "serve.skipped").read_text().strip() if started is False else ""
            print(f"{name:15s} " + (f"skipped: {skipped}" if skipped else f"ready ({time.monotonic() - t0:.1f}s)"),
                  flush=True)

    def down(self, timeout: float = 30) -> list[str]:
        """Stop exactly the recorded processes (clients first); keep every data folder."""
        stopped = []
        for name in (*CHECKS, *reversed(SERVICES)):
            rec = self.record(name)
            if rec is None:
                continue
            if self.alive(name):
                if name == "postgres":
                    stop_postgres(self)
                else:
                    stop_group(rec["pid"], timeout)
                stopped.append(name)
            (self.run / f"{name}.json").unlink()
        return stopped

    def status(self) -> list[dict]:
        p = self.ports()
        links = {"mlflow": f"http://{self.host}:{p.get('mlflow')}", "prefect": f"http://{self.host}:{p.get('prefect')}",
                 "serve": f"http://{self.host}:{p.get('serve')}/docs (health: /healthz)",
                 "postgres": self.pg_uri("<db>") if p else "",
                 "upstream": f"http://{self.host}:{p.get('upstream')}/v1 (stub, gateway file {self.dir}/gateway.yaml)",
                 "dask-scheduler": f"tcp://{self.host}:{p.get('dask-scheduler')}"}
        rows = []
        for name in SERVICES:
            rec = self.record(name) or {}
            state = "running" if self.alive(name) else ("stopped" if rec else "not started")
            if name == "serve" and state != "running" and (self.run / "serve.skipped").exists():
                state = "skipped: " + (self.run / "serve.skipped").read_text().strip()
            rows.append({"service": name, "state": state, "pid": rec.get("pid") if state == "running" else None,
                         "port": rec.get("port"), "url": links.get(name, ""), "log": str(self.log(name))})
        return rows


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m causal_router.stack.stack", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument("--timeout", type=float, default=240, help="seconds each service may take to be ready")
    args = parser.parse_args(argv)
    try:
        stack = Stack()
        if args.command == "up":
            t0 = time.monotonic()
            stack.up(args.timeout)
            print(f"stack up in {time.monotonic() - t0:.0f}s; clients: source {stack.write_env_file()}")
            _print_status(stack)
        elif args.command == "down":
            stopped = stack.down()
            print(f"stopped {', '.join(stopped) or 'nothing'}; data kept in {stack.dir}")
        elif args.command == "status":
            _print_status(stack)
        else:
            for k, v in stack.client_env().items():
                print(f"export {k}={v}")
    except StackError as err:
        print(f"stack: {err}", file=sys.stderr)
        return 1
    return 0


def _print_status(stack: Stack) -> None:
    rows = stack.status()
    print(f"{'service':15s} {'state':12s} {'pid':>7s} {'port':>6s}  link")
    for r in rows:
        print(f"{r['service']:15s} {r['state']:12s} {str(r['pid'] or '-'):>7s} {str(r['port'] or '-'):>6s}  "
              f"{r['url'] if r['state'] == 'running' else ''}")
    print(f"logs: {stack.run}/NAME.log   data: {stack.dir}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
