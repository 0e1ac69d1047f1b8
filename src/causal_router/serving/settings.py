"""The service's settings: :class:`ServeSettings` (params.yaml's ``serve`` section) lives in
:mod:`causal_router.settings.params`; this module names it for the service, with its environment.

Environment
-----------
CAUSAL_ROUTER_API_TOKEN       bearer token every endpoint but ``/healthz`` (and the docs, see ``docs``) requires
                              (unset: open, with a warning)
CAUSAL_ROUTER_DECISIONS_URI   decision log (default: SQLite at ``<project>/decisions/decisions.db``)
MLFLOW_TRACKING_URI           registry to load the router from (default: the project's ``mlruns/``)
"""

from __future__ import annotations

from ..settings.params import ServeSettings

__all__ = ["SETTINGS_ENV", "TOKEN_ENV", "ServeSettings"]

TOKEN_ENV = "CAUSAL_ROUTER_API_TOKEN"
SETTINGS_ENV = "CAUSAL_ROUTER_SERVE_SETTINGS"  # how `serve --workers N` hands settings to each worker
