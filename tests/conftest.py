"""Suite-wide settings."""

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _calibration_dir(tmp_path_factory):
    """The CPU precision calibration of ``precision="auto"`` runs once per test session, in a
    temporary folder (never the user's cache), whatever cache folders single tests point at."""
    key = "CAUSAL_ROUTER_CALIBRATION_DIR"
    before = os.environ.get(key)
    os.environ[key] = str(tmp_path_factory.mktemp("calibration"))
    yield
    if before is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = before


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks train several times faster on one thread (and do not fight other processes)."""
    from causal_router.features.hardware import torch_threads

    with torch_threads(1):
        yield



@pytest.fixture(scope="session", autouse=True)
def _prefect_logging_on_the_session_streams():
    """Prefect binds its console handler to ``sys.stderr`` when first imported. Imported first inside a
    ``CliRunner.invoke``, it would bind to the runner's stream, closed when the invoke returns, and a later
    test's flow logs would fail on it (a RecursionError, in some test orders): import it here, first."""
    import prefect.main  # noqa: F401
