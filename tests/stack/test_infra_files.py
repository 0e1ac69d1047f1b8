"""infra/compose.yaml, .env.example and prefect.yaml describe the same stack as `make up`."""

import importlib
from pathlib import Path

import yaml

from causal_router.stack.stack import POOL, SERVE_URL_ENV, Stack

ROOT = Path(__file__).resolve().parents[2]


def client_keys(tmp_path) -> set:
    (tmp_path / "params.yaml").write_text("runner: local\n")
    st = Stack(tmp_path)
    st.run.mkdir(parents=True)
    (st.run / "ports.json").write_text('{"postgres": 1, "mlflow": 2, "prefect": 3, "dask-scheduler": 4, "serve": 5}')
    return set(st.client_env()) - {SERVE_URL_ENV}


def test_compose_describes_the_same_services_and_variables(tmp_path):
    compose = yaml.safe_load((ROOT / "infra" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "mlflow", "prefect", "prefect-setup", "worker", "dask-scheduler", "dask-worker",
            "serve"} <= set(services)
    assert services["dask-worker"]["deploy"]["replicas"] == 2
    assert client_keys(tmp_path) <= set(services["worker"]["environment"])
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert "--artifacts-destination" in services["mlflow"]["command"]
    assert "postgresql" in services["prefect"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    init = (ROOT / "infra" / "postgres-init.sql").read_text()
    assert all(f"CREATE DATABASE {db}" in init for db in ("mlflow", "prefect", "decisions"))


def test_env_example_lists_the_settings(tmp_path):
    text = (ROOT / "infra" / ".env.example").read_text()
    keys = {line.lstrip("# ").split("=")[0] for line in text.splitlines() if "=" in line}
    assert client_keys(tmp_path) | {"CAUSAL_ROUTER_DVC_REMOTE"} <= keys


def test_prefect_yaml_deploys_without_hand_steps():
    spec = yaml.safe_load((ROOT / "infra" / "prefect.yaml").read_text())
    assert "pull" not in spec, "no pull step needing an undocumented variable"
    assert "$" not in (ROOT / "infra" / "prefect.yaml").read_text().split("deployments:")[1]
    names = set()
    for dep in spec["deployments"]:
        assert dep["work_pool"]["name"] == POOL
        path, attr = dep["entrypoint"].split(":")
        assert (ROOT / path).exists()
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert hasattr(getattr(module, attr), "fn"), f"{dep['entrypoint']} is not a flow"
        names.add(dep["name"])
    assert {"train", "promote", "nightly-retrain", "retrain-interval"} <= names
    interval = next(d for d in spec["deployments"] if d["name"] == "retrain-interval")
    assert interval["schedules"][0]["active"] is False
