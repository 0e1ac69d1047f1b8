"""The routing service's gateway in the stack, offline: a stub OpenAI-compatible upstream
(:mod:`causal_router.integrations.stub_upstream`, one more managed process on a free loopback port)
answers for every model, and ``<stack>/gateway.yaml`` (LiteLLM's ``model_list``) lists the
champion's models with that upstream as ``api_base``, the key as ``os.environ/NAME`` and per-token
prices from the price sheet ``params.yaml`` names (``crossfit.prices``: the bundled sample's models,
USD per million tokens there, per token in the file). ``causal-router serve --gateway`` serves it."""

from __future__ import annotations

import sys
from pathlib import Path

from .processes import StackError, http_ok, wait

#: The variable the gateway file's ``api_key`` names (set in the service's environment). The stub
#: ignores keys: this value is a placeholder, not a secret.
KEY_ENV = "CAUSAL_ROUTER_STACK_UPSTREAM_KEY"
KEY = "stack-stub-upstream"
#: What the stub answers: a fixed delay and the ``usage`` of every answer.
DELAY_MS = 50
PROMPT_TOKENS, COMPLETION_TOKENS = 120, 30
GATEWAY_FILE = "gateway.yaml"


def start_upstream(stack, timeout: float) -> None:
    """Start the stub upstream on ``ports()['upstream']`` and wait until it answers."""
    port = stack.ports()["upstream"]
    argv = [sys.executable, "-m", "causal_router.integrations.stub_upstream", "--host", stack.host,
            "--port", str(port), "--name", "stack-upstream", "--delay-ms", str(DELAY_MS),
            "--prompt-tokens", str(PROMPT_TOKENS), "--completion-tokens", str(COMPLETION_TOKENS)]
    pid = stack.spawn("upstream", argv, stack.env(), port)
    # the stub serves only POST /v1/chat/completions; FastAPI's /docs answers once it listens
    wait(lambda: http_ok(f"{upstream_url(stack)}/docs"), timeout, "stub upstream", stack.log("upstream"), pid)


def upstream_url(stack) -> str:
    return f"http://{stack.host}:{stack.ports()['upstream']}"


def price_sheet(root: Path) -> dict[str, tuple[float, float]]:
    """``{model: (input, output)}`` USD per million tokens: the sheet ``crossfit.prices`` names."""
    from ..settings.params import load_settings
    from ..settings.prices import load_prices

    sheet = load_settings(root / "params.yaml").crossfit.prices
    if not sheet:
        raise StackError("params.yaml names no price sheet (crossfit.prices): the gateway file needs prices")
    path = Path(sheet) if Path(sheet).is_absolute() else root / sheet
    return load_prices(path)


def gateway_entries(models, prices: dict, api_base: str) -> list[dict]:
    """LiteLLM ``model_list`` entries: one per model, prices per token."""
    missing = sorted(set(models) - set(prices))
    if missing:
        raise StackError(f"the price sheet has no prices for {missing}")
    return [{"model_name": m, "litellm_params": {
        "model": f"openai/{m}", "api_base": api_base, "api_key": f"os.environ/{KEY_ENV}",
        "input_cost_per_token": prices[m][0] / 1e6, "output_cost_per_token": prices[m][1] / 1e6}}
        for m in sorted(models)]


def write_gateway_file(stack, models=None) -> Path:
    """``<stack>/gateway.yaml`` for ``models`` (default: every model of the price sheet, the models
    the bundled sample's champion routes to) on the stub upstream."""
    import yaml

    prices = price_sheet(stack.root)
    entries = gateway_entries(models if models is not None else prices, prices, upstream_url(stack) + "/v1")
    path = stack.dir / GATEWAY_FILE
    path.write_text("# written by `make up` (causal_router.stack.upstream): the stub upstream of the stack\n"
                    + yaml.safe_dump({"model_list": entries}, sort_keys=False))
    return path


def read_gateway_prices(path: Path) -> dict[str, tuple[float, float]]:
    """``{model: (input, output)}`` USD per token, as the gateway file gives them (the e2e's check)."""
    import yaml

    out = {}
    for e in yaml.safe_load(Path(path).read_text())["model_list"]:
        p = e["litellm_params"]
        out[e["model_name"]] = (float(p["input_cost_per_token"]), float(p["output_cost_per_token"]))
    return out
