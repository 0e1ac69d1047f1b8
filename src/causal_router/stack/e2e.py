"""The whole loop through the servers of ``make up``, each step checked through the servers' own
APIs: ``python -m causal_router.stack.e2e`` (``make e2e``), then a summary table.

1. ``train``: the ``train`` deployment triggered through the Prefect API and run by the worker,
   its crossfit folds and embedding shards on the Dask workers (``embed.shards`` = 2 for this run);
2. tracked in the MLflow server: the run's rows in PostgreSQL, its artifacts in the served store;
3. ``promote``: the promotion gate (the ``promote`` deployment), ``champion`` set in the registry,
   and the README's pyfunc snippet run as written against the server;
4. the routing service (started on the champion if it is not running) serves the champion;
5. routed requests and their feedback, through the service's API, in the PostgreSQL decision log;
   then chat completions through the service's gateway (the official ``openai`` client, a few of
   them streamed) on the stack's stub upstream, and score-only feedback for them (the gateway
   recorded each call's cost: the upstream's usage x the gateway file's prices);
6. a retrain fired by the schedule: the paused ``retrain-interval`` deployment is resumed, the
   server's scheduler creates a run, the worker executes it (ingest, train, gate); the schedule
   is paused again; the ingest of step 5's decisions is checked in the decision log, and the new
   logs (``data/train.parquet`` + ``holdout.parquet``) must hold every gateway decision with the
   gateway's cost and the propensity it returned in ``x-causal-router-propensity``;
7. the service serving the champion the retrain's gate left, reloaded without a restart when it
   moved. When the gate kept the champion, the same reload is shown on a second service instance
   that follows a test alias (``e2e-reload``) moved from the champion to the retrain's challenger;
   the champion itself never moves without the gate.

The loop rewrites the logs (ingest), ``data.dvc`` and ``dvc.lock``: :mod:`.protect` restores them
afterwards (``--keep-data`` keeps the loop's versions). The service's steps are in :mod:`.e2e_serving`.
Exit status 0 when no step failed (SKIPPED steps name their reason).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC

from .e2e_serving import INTERVAL_MODEL, ServingSteps
from .protect import protect
from .stack import POOL, Stack, StackError

TRAIN = "causal-router-train-deployment/train"
PROMOTE = "causal-router-promote/promote"
RETRAIN = "causal-router-retrain/retrain-interval"


@dataclass
class Step:
    name: str
    status: str = "PENDING"  # PASS | FAIL | SKIPPED
    detail: str = ""
    seconds: float = 0.0
    facts: dict = field(default_factory=dict)


class E2E(ServingSteps):
    def __init__(self, stack: Stack, timeout: float = 1800):
        self.stack = stack
        self.timeout = timeout
        self.env = stack.client_env()
        os.environ.update(self.env)  # this process is a client of the stack
        self.steps: list[Step] = []
        self.t0_ms = int(time.time() * 1000)
        self.feedback_ids: list[str] = []
        self.served_before: str | None = None
        self.gateway_expect: dict = {}

    # ---- helpers -----------------------------------------------------------------------------
    def step(self, name: str, fn) -> Step:
        s = Step(name)
        t = time.monotonic()
        print(f"-> {name}", flush=True)
        try:
            out = fn(s)
            s.status = "SKIPPED" if out == "SKIPPED" else "PASS"
        except Exception as err:  # report and go on: the summary names every failed step
            s.status, s.detail = "FAIL", f"{type(err).__name__}: {err}"[:600]
        s.seconds = time.monotonic() - t
        print(f"   {s.status} ({s.seconds:.0f}s) {s.detail}", flush=True)
        self.steps.append(s)
        return s

    def run_deployment(self, name: str, parameters: dict | None = None):
        """Trigger through the API, then wait for a final state; returns the flow run."""
        from prefect.deployments import run_deployment

        fr = run_deployment(name, parameters=parameters or {}, timeout=0)
        return self.wait_flow_run(fr.id)

    def wait_flow_run(self, flow_run_id):
        from prefect.client.orchestration import get_client

        deadline = time.monotonic() + self.timeout
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                fr = client.read_flow_run(flow_run_id)
                if fr.state is not None and fr.state.is_final():
                    return fr
                time.sleep(3)
        raise TimeoutError(f"flow run {flow_run_id} not finished after {self.timeout:.0f}s")

    def mlflow(self):
        import mlflow

        uri = self.env["MLFLOW_TRACKING_URI"]
        return mlflow.MlflowClient(uri, uri)

    def dask_counts(self) -> dict:
        from distributed import Client

        with Client(self.env["CAUSAL_ROUTER_TASK_RUNNER"].replace("dask://", "tcp://"), timeout=10) as c:
            per_worker = c.run(lambda dask_worker: (dask_worker.name, dask_worker.state.executed_count))
            prefixes = c.run_on_scheduler(
                lambda dask_scheduler: {k: int(sum(v.state_counts.values())) for k, v in
                                        dask_scheduler.task_prefixes.items()})
        return {"workers": dict(per_worker.values()), "prefixes": prefixes}

    def pg_rows(self, db: str, sql: str, *args) -> list:
        import psycopg

        port = self.stack.ports()["postgres"]
        with psycopg.connect(f"host={self.stack.host} port={port} user=postgres dbname={db}") as conn:
            return conn.execute(sql, args).fetchall()

    def pg_count(self, db: str, sql: str, *args) -> int:
        return int(self.pg_rows(db, sql, *args)[0][0])

    def new_runs(self, since_ms: int) -> list:
        c = self.mlflow()
        exp = c.get_experiment_by_name(os.environ.get("CAUSAL_ROUTER_EXPERIMENT", "causal-router"))
        if exp is None:
            return []
        return c.search_runs([exp.experiment_id], f"attributes.start_time > {since_ms}",
                             order_by=["attributes.start_time DESC"])

    # ---- the steps ---------------------------------------------------------------------------
    def train(self, s: Step):
        import yaml

        before = self.dask_counts()
        params = yaml.safe_load((self.stack.root / "params.yaml").read_text())
        params["embed"]["shards"] = 2  # one shard per Dask worker
        path = self.stack.dir / "params.e2e.yaml"
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        fr = self.run_deployment(TRAIN, {"params_path": str(path), "root": str(self.stack.root)})
        s.facts["flow_run"] = str(fr.id)
        if not fr.state.is_completed():
            raise AssertionError(f"train flow run {fr.name} ended {fr.state.type.value}: {fr.state.message}")
        if fr.work_pool_name != POOL:
            raise AssertionError(f"ran on work pool {fr.work_pool_name!r}, not {POOL!r}")
        after = self.dask_counts()
        done = {w: after["workers"].get(w, 0) - before["workers"].get(w, 0) for w in after["workers"]}
        prefixes = {k: v - before["prefixes"].get(k, 0) for k, v in after["prefixes"].items()
                    if v - before["prefixes"].get(k, 0) > 0}
        if len([w for w, n in done.items() if n > 0]) < 2:
            raise AssertionError(f"tasks per Dask worker {done}: expected both workers to execute tasks")
        folds = sum(v for k, v in prefixes.items() if "crossfit" in k)
        embeds = sum(v for k, v in prefixes.items() if "embed" in k)
        if not folds or not embeds:
            raise AssertionError(f"Dask task prefixes {prefixes}: expected crossfit folds and embedding tasks")
        s.detail = (f"flow run {fr.name} COMPLETED by the worker; Dask tasks per worker {done}; "
                    f"crossfit tasks {folds}, embed tasks {embeds}")

    def tracked(self, s: Step):
        runs = self.new_runs(self.t0_ms)
        train_runs = [r for r in runs if r.data.metrics]
        if not train_runs:
            raise AssertionError("no MLflow run with metrics since the e2e started")
        run = train_runs[-1]  # the first one of this e2e: the train deployment's
        s.facts["run_id"] = run.info.run_id
        rows = self.pg_count("mlflow", "SELECT count(*) FROM runs WHERE run_uuid = %s", run.info.run_id)
        metrics = self.pg_count("mlflow", "SELECT count(*) FROM metrics WHERE run_uuid = %s", run.info.run_id)
        if rows != 1 or metrics == 0:
            raise AssertionError(f"PostgreSQL holds {rows} run row(s), {metrics} metric row(s) for {run.info.run_id}")
        if not run.info.artifact_uri.startswith("mlflow-artifacts:"):
            raise AssertionError(f"artifact URI {run.info.artifact_uri} is not the served store")
        listed = [a.path for a in self.mlflow().list_artifacts(run.info.run_id)]
        on_disk = [p for p in self.stack.artifacts.rglob("*") if run.info.run_id in str(p) and p.is_file()]
        if not listed or not on_disk:
            raise AssertionError(f"artifacts listed {listed}, files in {self.stack.artifacts}: {len(on_disk)}")
        c = self.mlflow()
        challenger = c.get_model_version_by_alias(INTERVAL_MODEL, "challenger")
        if challenger.run_id != run.info.run_id:
            raise AssertionError(f"{INTERVAL_MODEL}@challenger is from run {challenger.run_id}, not {run.info.run_id}")
        s.detail = (f"run {run.info.run_id[:8]}: 1 row + {metrics} metric rows in PostgreSQL, {len(on_disk)} "
                    f"artifact files served ({', '.join(sorted(listed)[:4])}...); "
                    f"{INTERVAL_MODEL} v{challenger.version} = challenger")

    def promote(self, s: Step):
        c = self.mlflow()
        challenger = c.get_model_version_by_alias(INTERVAL_MODEL, "challenger")
        fr = self.run_deployment(PROMOTE, {"root": str(self.stack.root)})
        if not fr.state.is_completed():
            raise AssertionError(f"promote flow run ended {fr.state.type.value}: {fr.state.message}")
        tags = c.get_model_version(INTERVAL_MODEL, challenger.version).tags
        decision = tags.get("promotion.decision")
        if decision not in ("promoted", "rejected", "skipped"):
            raise AssertionError(f"challenger v{challenger.version} carries promotion.decision={decision!r}")
        champion = c.get_model_version_by_alias(INTERVAL_MODEL, "champion")
        s.facts["champion"] = champion.version
        s.detail = (f"v{challenger.version}: {decision}; champion = v{champion.version} "
                    f"({tags.get('promotion.reason', '')[:120]})")

    def readme_snippet(self, s: Step):
        """The README's pyfunc snippet, as written, against the MLflow server (the champion of step 3)."""
        import re
        import subprocess

        text = (self.stack.root / "README.md").read_text()
        m = re.search(r"<!-- pyfunc-snippet:start -->\s*```python\n(.*?)```", text, re.S)
        if m is None:
            raise AssertionError("README.md lacks the pyfunc snippet")
        out = subprocess.run([sys.executable, "-c", m.group(1)], cwd=self.stack.root, env={**os.environ},
                             capture_output=True, text=True, timeout=300)
        if out.returncode:
            raise AssertionError(f"snippet failed: {out.stderr[-800:]}")
        s.detail = f"routed: {' '.join(out.stdout.split())[-120:]}"

    def scheduled_retrain(self, s: Step):
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            DeploymentFilter,
            DeploymentFilterId,
            FlowRunFilter,
            FlowRunFilterStartTime,
        )

        with get_client(sync_client=True) as client:
            dep = client.read_deployment_by_name(RETRAIN)
            if not dep.schedules:
                raise AssertionError(f"{RETRAIN} has no schedule")
            since = self._now()
            dep_filter = DeploymentFilter(id=DeploymentFilterId(any_=[dep.id]))
            for sched in dep.schedules:
                client.update_deployment_schedule(dep.id, sched.id, active=True)
            try:
                deadline = time.monotonic() + self.timeout
                run = None
                while time.monotonic() < deadline and run is None:
                    runs = client.read_flow_runs(deployment_filter=dep_filter, flow_run_filter=FlowRunFilter(
                        start_time=FlowRunFilterStartTime(after_=since)))
                    for fr in runs:
                        if fr.auto_scheduled and fr.state is not None and fr.state.is_final():
                            run = fr
                    time.sleep(3)
            finally:
                for sched in dep.schedules:
                    client.update_deployment_schedule(dep.id, sched.id, active=False)
                for fr in client.read_flow_runs(deployment_filter=dep_filter):
                    if fr.state is not None and fr.state.type.value in ("SCHEDULED", "PENDING"):
                        client.delete_flow_run(fr.id)
        if run is None:
            raise TimeoutError(f"no scheduled run of {RETRAIN} finished within {self.timeout:.0f}s")
        if not run.state.is_completed():
            raise AssertionError(f"scheduled run {run.name} ended {run.state.type.value}: {run.state.message}")
        start_ms = int(run.start_time.timestamp() * 1000)
        tracked = [r for r in self.new_runs(start_ms) if r.data.metrics]
        if not tracked:
            raise AssertionError("the scheduled retrain logged no MLflow run")
        s.detail = (f"scheduled run {run.name} (auto-scheduled, worker) COMPLETED; MLflow run "
                    f"{tracked[-1].info.run_id[:8]}")

    @staticmethod
    def _now():
        from datetime import datetime

        return datetime.now(UTC)

    def run_all(self) -> int:
        if not self.stack.alive("prefect") or not self.stack.alive("worker") or not self.stack.alive("mlflow"):
            print("e2e: the stack is not up: run `make up` first", file=sys.stderr)
            return 2
        t = time.monotonic()
        train = self.step("train deployment on the worker and Dask", self.train)
        if train.status == "PASS":
            self.step("tracked in the MLflow server", self.tracked)
            self.step("promotion gate", self.promote)
            self.step("README pyfunc snippet on the server", self.readme_snippet)
        self.step("service serves the champion", self.service_serves_champion)
        self.step("routed requests and feedback", self.route_feedback)
        self.step("gateway chat completions, feedback", self.gateway_chat)
        self.step("retrain fired by the schedule", self.scheduled_retrain)
        self.step("ingest (in the retrain)", self.ingest_check)
        self.step("gateway cost, propensity in logs", self.gateway_logs)
        self.step("service reloads the new champion", self.service_reload)
        total = time.monotonic() - t
        print(f"\n{'step':34s} {'status':8s} {'s':>5s}  detail")
        for s in self.steps:
            print(f"{s.name:34s} {s.status:8s} {s.seconds:5.0f}  {s.detail}")
        failed = [s for s in self.steps if s.status == "FAIL"]
        print(f"\ne2e: {len(self.steps) - len(failed)}/{len(self.steps)} steps passed or skipped, "
              f"{len(failed)} failed, {total:.0f}s")
        return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m causal_router.stack.e2e", description=__doc__.split("\n")[0])
    parser.add_argument("--timeout", type=float, default=1800, help="seconds any one flow run may take")
    parser.add_argument("--keep-data", action="store_true", help="keep the logs, data.dvc and dvc.lock the loop wrote")
    args = parser.parse_args(argv)
    try:
        stack = Stack()
    except StackError as err:
        print(f"e2e: {err}", file=sys.stderr)
        return 1
    restore = None if args.keep_data else protect(stack)
    try:
        return E2E(stack, args.timeout).run_all()
    except StackError as err:
        print(f"e2e: {err}", file=sys.stderr)
        return 1
    finally:
        if restore is not None:
            restore()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
