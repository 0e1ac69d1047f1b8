"""The gateway's model file (``serve --gateway GATEWAY.yaml``, ``serve.gateway``): LiteLLM's own
``model_list`` format, checked at start.

The file is either a list of deployments or a LiteLLM proxy-style mapping::

    model_list:
      - model_name: gpt-4o-mini                    # a model the router routes to
        litellm_params:
          model: openai/gpt-4o-mini                # LiteLLM's provider/model
          api_base: https://api.openai.com/v1
          api_key: os.environ/OPENAI_API_KEY       # keys come from the environment only
          input_cost_per_token: 1.5e-7             # USD per token (LiteLLM's custom pricing)
          output_cost_per_token: 6.0e-7
          timeout: 30                              # seconds (optional; LiteLLM's per-deployment timeout)
    router_settings:                               # optional
      fallbacks: [{gpt-4o-mini: [llama-3-8b]}]     # LiteLLM's semantics: on failure, try these in order
      timeout: 60                                  # seconds, every deployment without its own
      num_retries: 0                               # LiteLLM's retries of the same deployment

Checks (each failure is one line, :class:`GatewayConfigError`): the file's ``model_name`` set equals the
router's models (the line names the models on each side); every model has prices, from the file
(``input_cost_per_token`` and ``output_cost_per_token``, in ``litellm_params`` or ``model_info``) or,
failing that, the service's price sheet (``serve.prices``, USD per million tokens); an ``api_key`` is
``os.environ/NAME`` with ``NAME`` set (a literal key is refused, and never shown). The keys stay in
the environment: the gateway reads ``os.environ/NAME`` at each call; nothing here logs, stores or echoes them.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SettingsError

__all__ = ["GatewayConfig", "GatewayConfigError", "GatewayModel", "load_gateway", "reload_gateway", "DEFAULT_TIMEOUT_S"]

log = logging.getLogger(__name__)

#: Seconds an upstream call may take when neither the deployment nor ``router_settings`` set a timeout.
DEFAULT_TIMEOUT_S = 60.0
_ENV_REF = re.compile(r"^os\.environ/([A-Za-z_][A-Za-z0-9_]*)$")
_TOP = {"model_list", "router_settings"}
_ROUTER = {"fallbacks", "timeout", "num_retries"}


class GatewayConfigError(SettingsError):
    """The gateway file cannot be served (one line: the file and what is wrong)."""


@dataclass
class GatewayModel:
    """One ``model_list`` entry: its name, LiteLLM's parameters (``api_key`` still ``os.environ/NAME``),
    its prices in USD per token and where they came from (``file`` or ``price sheet``)."""

    name: str
    litellm_params: dict
    input_cost_per_token: float
    output_cost_per_token: float
    price_source: str
    key_env: str | None = None

    @property
    def upstream(self) -> str:
        """How errors name the upstream: the LiteLLM model and its host (no key, no path)."""
        base = str(self.litellm_params.get("api_base") or "")
        host = re.sub(r"^[a-z]+://", "", base).split("/")[0] if base and not base.startswith("os.environ/") else ""
        return f"{self.name} ({self.litellm_params.get('model')}{' at ' + host if host else ''})"

    def cost(self, input_tokens: int | None, output_tokens: int | None) -> float:
        """USD: tokens x this model's prices (a missing count counts as 0)."""
        return (float(input_tokens or 0) * self.input_cost_per_token
                + float(output_tokens or 0) * self.output_cost_per_token)


@dataclass
class GatewayConfig:
    path: str
    models: dict[str, GatewayModel]
    fallbacks: dict[str, list[str]] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT_S
    num_retries: int = 0

    def model_list(self) -> list[dict]:
        """LiteLLM's ``model_list`` entries (their ``litellm_params`` are the gateway's call parameters),
        prices in ``litellm_params``, each deployment's timeout set."""
        out = []
        for m in self.models.values():
            params = dict(m.litellm_params)
            params.update(input_cost_per_token=m.input_cost_per_token, output_cost_per_token=m.output_cost_per_token)
            params.setdefault("timeout", self.timeout)
            out.append({"model_name": m.name, "litellm_params": params})
        return out

    def secrets(self) -> list[str]:
        """The key values (from the environment), so that error texts can be scrubbed of them."""
        return [v for m in self.models.values() if m.key_env and (v := os.environ.get(m.key_env))]


def _price(entry: dict, key: str):
    for where in ("litellm_params", "model_info"):
        v = (entry.get(where) or {}).get(key)
        if v is not None:
            return v
    return None


def _read(path: Path) -> tuple[list, dict]:
    from ..settings.prices import read_yaml

    raw = read_yaml(path, f"gateway file not found: {str(path)!r}",
                    f"{path}: not a readable gateway file (YAML): {{first}}", GatewayConfigError)
    if isinstance(raw, list):
        return raw, {}
    if not isinstance(raw, dict) or not isinstance(raw.get("model_list"), list):
        raise GatewayConfigError(f"{path}: a gateway file is LiteLLM's model_list (a list, or a mapping with "
                                 f"model_list: [...])")
    unknown = sorted(set(raw) - _TOP)
    if unknown:
        raise GatewayConfigError(f"{path}: unknown key(s) {unknown}; known: {sorted(_TOP)}")
    rs = raw.get("router_settings") or {}
    if not isinstance(rs, dict) or set(rs) - _ROUTER:
        raise GatewayConfigError(f"{path}: router_settings takes only {sorted(_ROUTER)}")
    return raw["model_list"], rs


def load_gateway(path, router_models, prices: dict | None = None) -> GatewayConfig:
    """Read and check the gateway file at ``path`` against the router's models and the price sheet
    (``{model: (input, output)}`` USD per million tokens, or None). Raises :class:`GatewayConfigError`."""
    path = Path(path)
    entries, rs = _read(path)
    models: dict[str, GatewayModel] = {}
    unpriced = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("model_name"), str) or not isinstance(
                e.get("litellm_params"), dict) or not e["litellm_params"].get("model"):
            raise GatewayConfigError(f"{path}: entry {i} needs model_name and litellm_params.model")
        name, params = e["model_name"], dict(e["litellm_params"])
        if name in models:
            raise GatewayConfigError(f"{path}: model {name!r} is listed twice (one deployment per model)")
        key_env = None
        if params.get("api_key") is not None:
            m = _ENV_REF.match(str(params["api_key"]))
            if not m:
                raise GatewayConfigError(f"{path}: model {name!r}: api_key must be os.environ/NAME (keys come from "
                                         f"the environment only; the file's value is not shown)")
            key_env = m.group(1)
            if not os.environ.get(key_env):
                raise GatewayConfigError(f"{path}: model {name!r}: api_key names the environment variable "
                                         f"{key_env}, which is not set")
        pin, pout = _price(e, "input_cost_per_token"), _price(e, "output_cost_per_token")
        source = "file"
        if pin is None or pout is None:
            if prices and name in prices:
                pin, pout, source = prices[name][0] / 1e6, prices[name][1] / 1e6, "price sheet"
            else:
                unpriced.append(name)
                continue
        try:
            pin, pout = float(pin), float(pout)
        except (TypeError, ValueError):
            raise GatewayConfigError(f"{path}: model {name!r}: prices must be numbers") from None
        if not all(math.isfinite(x) and x >= 0 for x in (pin, pout)):
            raise GatewayConfigError(f"{path}: model {name!r}: prices must be finite and >= 0")
        for k in ("input_cost_per_token", "output_cost_per_token"):
            params.pop(k, None)
        models[name] = GatewayModel(name, params, pin, pout, source, key_env)
    listed = set(models) | set(unpriced)
    routed = set(router_models)
    if listed != routed:
        raise GatewayConfigError(f"{path} does not match the router: routed to but not in the file: "
                                 f"{sorted(routed - listed) or 'none'}; in the file but not routed to: "
                                 f"{sorted(listed - routed) or 'none'}")
    if unpriced:
        raise GatewayConfigError(f"{path}: no prices for model(s) {sorted(unpriced)}: set input_cost_per_token and "
                                 f"output_cost_per_token (USD per token), or a price sheet (serve.prices) "
                                 f"covering them")
    fallbacks: dict[str, list[str]] = {}
    for item in rs.get("fallbacks") or []:
        if not isinstance(item, dict):
            raise GatewayConfigError(f"{path}: router_settings.fallbacks is a list of {{model: [fallback, ...]}}")
        for k, v in item.items():
            v = [v] if isinstance(v, str) else list(v or [])
            bad = [x for x in [k, *v] if x not in models]
            if bad:
                raise GatewayConfigError(f"{path}: fallbacks name model(s) not in the file: {sorted(set(bad))}")
            fallbacks[k] = [x for x in v if x != k]
    try:
        timeout = float(rs.get("timeout", DEFAULT_TIMEOUT_S))
        retries = int(rs.get("num_retries", 0))
    except (TypeError, ValueError):
        raise GatewayConfigError(f"{path}: router_settings.timeout and num_retries must be numbers") from None
    if not (timeout > 0 and math.isfinite(timeout)) or retries < 0:
        raise GatewayConfigError(f"{path}: router_settings.timeout must be > 0 and num_retries >= 0")
    return GatewayConfig(str(path), models, fallbacks, timeout, retries)


def reload_gateway(path, old: GatewayConfig, router_models, prices: dict | None = None) -> GatewayConfig | None:
    """The gateway file at ``path`` read again for a running gateway: None (logged) when it no longer loads
    or adds or removes a model (a restart of ``serve`` does that), so the old one stays."""
    try:
        config = load_gateway(path, router_models, prices)
    except Exception as err:  # GatewayConfigError, an unreadable or half-written file
        log.error("gateway file %s changed but cannot be served (%s): keeping the old one", path, err)
        return None
    if set(config.models) != set(old.models):
        log.error("gateway file %s changed its models (%s): restart serve to add or remove a model; keeping "
                  "the old file", path, sorted(set(config.models) ^ set(old.models)))
        return None
    log.warning("gateway file %s re-read: its prices and parameters hold from this request on", path)
    return config
