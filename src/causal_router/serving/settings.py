"""The service's settings: the ``serve`` section of ``params.yaml`` over these defaults.

Environment
-----------
CAUSAL_ROUTER_API_TOKEN       bearer token every endpoint but ``/healthz`` (and the docs, see ``docs``) requires
                              (unset: open, with a warning)
CAUSAL_ROUTER_DECISIONS_URI   decision log (default: SQLite at ``<project>/decisions/decisions.db``)
MLFLOW_TRACKING_URI           registry to load the router from (default: the project's ``mlruns/``)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

TOKEN_ENV = "CAUSAL_ROUTER_API_TOKEN"
SETTINGS_ENV = "CAUSAL_ROUTER_SERVE_SETTINGS"  # how `serve --workers N` hands settings to each worker
DOCS_MODES = ("open", "token", "off")


@dataclass
class ServeSettings:
    """What ``causal-router serve`` runs with (see ``params.yaml``'s ``serve`` section).

    Attributes
    ----------
    model_uri : str
        ``models:/NAME@ALIAS`` (reloaded when the alias moves) or ``models:/NAME/VERSION``.
    explore : float
        Default exploration rate of the served policy (a request may pass its own).
    floor : float
        Least probability of every model whenever exploring (bounds the next round's DR weights).
    temperature : float
        How the exploration spreads over the other models (large: uniform; small: runners-up).
    challenger_share : float
        Share of that spread given to the registered challenger's choice where it differs from the
        champion's (0: the challenger is not loaded), so that the gate has rows to judge it on.
    strategy : str
        ``thompson`` (explore where the router's posterior is unsure, at least ``explore``) or
        ``spread`` (exactly ``explore``); see :mod:`causal_router.policy.exploration`.
    posterior_scale : float
        ``thompson``: scale of the posterior's spread (smaller explores less).
    seed : int or None
        Seed of the draws (None: fresh entropy).
    poll_seconds : float
        How often the alias is checked.
    batch_window_ms : float
        How long a request waits for others to be embedded with it (under load the window grows
        to a tenth of the last batch's time, at most 100 ms; requests already queued always join).
    max_batch : int
        Most prompts embedded together.
    max_body_bytes, max_prompt_chars, max_prompts : int
        Request limits (413 beyond them).
    prices : str or None
        Price sheet used to cost feedback that carries token counts instead of a cost.
    decisions_uri : str or None
        Decision log URI (None: ``$CAUSAL_ROUTER_DECISIONS_URI`` or ``decisions/decisions.db``).
    encoder : str or None
        ``module:callable`` returning the encoder (None: the model's own encoder).
    docs : str
        ``/docs``, ``/redoc`` and ``/openapi.json`` (the API's shape, no data): ``open`` (no token needed),
        ``token`` (behind the token like every endpoint but ``/healthz``) or ``off`` (not served).
    root : str or None
        Project folder (``mlruns/``, ``decisions/``, a relative price sheet); None: the project found
        from the current folder (:func:`causal_router.registry.tracking.find_project_root`).
    """

    model_uri: str = "models:/causal-router-interval@champion"
    explore: float = 0.1
    floor: float = 0.01
    temperature: float = 1.0
    challenger_share: float = 1.0
    strategy: str = "thompson"
    posterior_scale: float = 0.3
    seed: int | None = None
    poll_seconds: float = 10.0
    batch_window_ms: float = 5.0
    max_batch: int = 64
    max_body_bytes: int = 1 << 20
    max_prompt_chars: int = 32_000
    max_prompts: int = 64
    prices: str | None = None
    decisions_uri: str | None = None
    encoder: str | None = None
    docs: str = "open"
    root: str | None = None

    def __post_init__(self):
        if self.docs not in DOCS_MODES:
            raise ValueError(f"serve.docs must be one of {', '.join(DOCS_MODES)}, got {self.docs!r}")

    @classmethod
    def from_params(cls, path="params.yaml", **overrides) -> ServeSettings:
        """``params.yaml``'s ``serve`` section (the price sheet from ``crossfit.prices``), then ``overrides``
        (None values ignored). A missing file gives the defaults."""
        import yaml

        p = Path(path)
        raw = (yaml.safe_load(p.read_text()) or {}) if p.is_file() else {}
        serve = dict(raw.get("serve") or {})
        if serve.get("prices") is None and (raw.get("crossfit") or {}).get("prices"):
            serve["prices"] = raw["crossfit"]["prices"]
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(serve) - known)
        if unknown:
            raise ValueError(f"{path}: unknown serve setting(s) {unknown}; known: {sorted(known)}")
        serve.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**serve)

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, text: str) -> ServeSettings:
        return cls(**json.loads(text))
