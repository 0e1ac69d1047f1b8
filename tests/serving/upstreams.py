"""Local OpenAI-compatible stub upstreams for the gateway and LiteLLM tests: one per tiny model, each
answering a known text and known ``usage``; the tests make them fail or stall through their behaviour."""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest  # noqa: E402

from causal_router.integrations.stub_upstream import StubBehaviour, stub_app  # noqa: E402
from tests.serving.conftest import LiveServer  # noqa: E402
from tests.serving.tiny import MODELS  # noqa: E402

PRICES = {"model-a": (1e-7, 2e-7), "model-b": (3e-7, 6e-7), "model-c": (1e-6, 4e-6)}  # USD per token
USAGE = {"model-a": (100, 20), "model-b": (110, 30), "model-c": (120, 40)}  # (input, output) tokens


@pytest.fixture(scope="module")
def upstreams():
    """{model: (its StubBehaviour, its base URL)}, served for the test module."""
    stubs = {m: StubBehaviour(m, f"answer from {m}", *USAGE[m]) for m in MODELS}
    servers = {m: LiveServer(stub_app(b)).__enter__() for m, b in stubs.items()}
    yield {m: (stubs[m], servers[m].url) for m in MODELS}
    for s in servers.values():
        s.__exit__(None, None, None)
