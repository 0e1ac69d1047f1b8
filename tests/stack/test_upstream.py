"""The stack's gateway pieces: the gateway file it writes passes the service's own start-up checks
with the price sheet's models and per-token prices, and the stub upstream runs as a managed process
(started on a free loopback port, answering known usage, stopped by `down`)."""

import json

import httpx
import pytest

from causal_router.serving.gateway_config import load_gateway
from causal_router.settings.prices import load_prices
from causal_router.stack import stack as S
from causal_router.stack import upstream as U
from causal_router.stack.processes import free_port, start_time

SHEET = "configs/prices/llmrouter_9models.yaml"


@pytest.fixture
def project(tmp_path, monkeypatch):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "params.yaml").write_text(f"crossfit:\n  prices: {root / SHEET}\n")
    monkeypatch.delenv(S.DIR_ENV, raising=False)
    st = S.Stack(tmp_path)
    st.run.mkdir(parents=True)
    (st.run / "ports.json").write_text(json.dumps({name: free_port("127.0.0.1") for name in S.PREFERRED_PORTS}))
    yield st, load_prices(root / SHEET)
    st.down()


def test_the_gateway_file_passes_the_services_checks(project, monkeypatch):
    st, sheet = project
    path = U.write_gateway_file(st)
    monkeypatch.setenv(U.KEY_ENV, U.KEY)
    cfg = load_gateway(path, list(sheet), prices=None)  # no price sheet: the file's own prices
    assert set(cfg.models) == set(sheet)
    for name, m in cfg.models.items():
        assert m.price_source == "file"
        assert m.litellm_params["api_base"] == f"{U.upstream_url(st)}/v1"
        assert m.litellm_params["api_key"] == f"os.environ/{U.KEY_ENV}"
        assert m.cost(1_000_000, 0) == pytest.approx(sheet[name][0])  # USD per million in the sheet
    assert U.read_gateway_prices(path) == {n: (m.input_cost_per_token, m.output_cost_per_token)
                                           for n, m in cfg.models.items()}


def test_a_model_without_a_price_is_refused(project):
    st, _ = project
    with pytest.raises(S.StackError, match="no prices"):
        U.write_gateway_file(st, models=["not-in-the-sheet"])


@pytest.mark.timeout(180)
def test_the_stub_upstream_is_a_managed_process(project):
    st, _ = project
    U.start_upstream(st, 120)
    assert st.alive("upstream")
    pid = st.record("upstream")["pid"]
    r = httpx.post(f"{U.upstream_url(st)}/v1/chat/completions", timeout=30,
                   json={"model": "gemma-2-9b-it", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and r.json()["model"] == "gemma-2-9b-it"
    assert (r.json()["usage"]["prompt_tokens"], r.json()["usage"]["completion_tokens"]) == (
        U.PROMPT_TOKENS, U.COMPLETION_TOKENS)
    assert st.down() == ["upstream"] and start_time(pid) is None
