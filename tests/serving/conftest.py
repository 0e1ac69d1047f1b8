"""Fixtures for the service tests: a registry with two versions of a tiny router (champion -> 1),
copied per test, a decision store per test, and in-process or subprocess servers on free ports."""

import os
import shutil
import socket
import threading
import time

import pytest

from tests.serving.tiny import TinyEncoder, routerset

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

NAME = "causal-router-interval"
URI = f"models:/{NAME}@champion"


def reset_mlflow():
    """Forget the tracking and registry URIs this module set (MLflow keeps them in globals and in
    the environment), so that later tests resolve their own."""
    import mlflow

    from causal_router.registry import tracking

    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    tracking._state.update(uri=None, experiment_id=None)


@pytest.fixture(scope="session")
def registry_template(tmp_path_factory):
    """An MLflow SQLite store holding versions 1 and 2 of the tiny router, champion -> 1."""
    import mlflow

    from causal_router.registry import tracking
    from causal_router.registry.pyfunc import INTERVAL_METHOD, log_router_model

    root = tmp_path_factory.mktemp("serving-registry")
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        tracking.configure(root)
        for tag in (1, 2):
            d = routerset(tag).save(root / f"set{tag}")
            with mlflow.start_run():
                log_router_model(d, "interval", INTERVAL_METHOD, registered_model_name=NAME)
        mlflow.MlflowClient().set_registered_model_alias(NAME, "champion", "1")
    finally:
        reset_mlflow()
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    return root / "mlruns" / "mlflow.db"


@pytest.fixture
def registry(tmp_path, registry_template, monkeypatch):
    """This test's copy of the registry, set as MLFLOW_TRACKING_URI; yields the tracking URI."""
    import mlflow


    (tmp_path / "mlruns").mkdir()
    db = tmp_path / "mlruns" / "mlflow.db"
    shutil.copy(registry_template, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("CAUSAL_ROUTER_API_TOKEN", raising=False)
    monkeypatch.delenv("CAUSAL_ROUTER_DECISIONS_URI", raising=False)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield uri
    reset_mlflow()  # then monkeypatch restores the environment


@pytest.fixture
def settings(tmp_path):
    from causal_router.serving.settings import ServeSettings

    return ServeSettings(model_uri=URI, explore=0.2, floor=0.02, seed=0, poll_seconds=0.2, batch_window_ms=20,
                         decisions_uri=f"sqlite:///{tmp_path / 'decisions' / 'decisions.db'}", root=str(tmp_path),
                         max_body_bytes=100_000, max_prompt_chars=2_000, max_prompts=50)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn in a thread on a socket bound to a free loopback port."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        settings = getattr(getattr(app, "state", None), "settings", None)
        if settings is not None:  # as `serve` runs it: the guarded protocol (header timeout), keep-alive timeout
            from causal_router.serving.limits import uvicorn_config

            config = uvicorn_config(app, settings, log_level="warning", lifespan="on")
        else:
            config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


@pytest.fixture
def make_app(registry, settings):
    """Build the app on this test's registry and store, with the tiny encoder."""
    from causal_router.serving.api import create_app

    def make(**overrides):
        s = settings
        for k, v in overrides.items():
            setattr(s, k, v)
        return create_app(s, encoder=TinyEncoder())

    return make


@pytest.fixture
def live(make_app):
    """A started server (uvicorn, loopback, free port) around ``make_app()``; yields LiveServer."""
    servers = []

    def start(**overrides):
        srv = LiveServer(make_app(**overrides)).__enter__()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.__exit__(None, None, None)
