"""Names in the registry: the aliases, the registered model names, ``models:/`` URIs and MLflow's key limits.

Nothing here talks to a store except :func:`resolve_version`, and only through the client it is
given; this module imports nothing else of the registry, so every registry module can use it.

Aliases: ``challenger`` (the newest trained version of a router) and ``champion`` (the version the
evidence gate let through, the one served).

Registered names: ``causal-router-interval`` (the interval router, any lambda in its grid's range)
and ``causal-router-endpoint-<lam>`` (one per grid lambda; :func:`format_lambda`).

Model URIs, the one rule (:func:`parse_model_uri`)::

    [models:/]NAME            the newest version of NAME
    [models:/]NAME@ALIAS      the version ALIAS points at now
    [models:/]NAME/VERSION    that version (digits)

The ``models:/`` prefix may be left out and surrounding blanks are ignored. NAME holds no ``/``,
``@`` or ``:`` (MLflow refuses ``/`` and ``:`` in names; so ``runs:/...`` and other schemes are refused
rather than read as a model name). This accepts every URI that the two earlier parsers (lineage's and
the service's) accepted for a real registered name.
"""

from __future__ import annotations

import json
import re

CHALLENGER = "challenger"
CHAMPION = "champion"
ALIASES = (CHALLENGER, CHAMPION)

ENDPOINT_PREFIX = "causal-router-endpoint-"
INTERVAL_NAME = "causal-router-interval"

SCHEME = "models:/"
URI_FORMS = "models:/NAME@ALIAS, models:/NAME/VERSION or models:/NAME (the newest version)"
_URI = re.compile(r"^(?:models:/)?(?P<name>[^@/:]*[^@/:\s])(?:@(?P<alias>[^/@]*[^/@\s])|/(?P<version>\d+))?$")

# MLflow limits (mlflow.utils.validation)
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
_BAD_KEY_CHARS = re.compile(r"[^0-9A-Za-z_\-. /:]")


def format_lambda(lam: float) -> str:
    """Lambda as it appears in a model name: ``3700.0 -> "3700"``, ``0.5 -> "0p5"``."""
    lam = float(lam)
    if lam.is_integer():
        return str(int(lam))
    return repr(lam).replace(".", "p").replace("+", "")


def endpoint_name(lam: float) -> str:
    """Registered name of the endpoint router at ``lam``, e.g. ``causal-router-endpoint-3700``."""
    return f"{ENDPOINT_PREFIX}{format_lambda(lam)}"


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``(name, alias, version)`` of a model URI (the module docstring's rule; alias and version both
    None: the newest version). Raises ValueError naming the accepted forms."""
    m = _URI.match((uri or "").strip()) if isinstance(uri, str) else None
    if not m:
        raise ValueError(f"not a registered model URI: {uri!r} (expected {URI_FORMS})")
    return m["name"], m["alias"], m["version"]


def model_uri(name: str, alias: str | None = None, version=None) -> str:
    """``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``models:/NAME``."""
    if alias is not None and version is not None:
        raise ValueError("give an alias or a version, not both")
    return f"{SCHEME}{name}" + (f"@{alias}" if alias is not None else f"/{version}" if version is not None else "")


def resolve_version(client, uri: str):
    """The model version (an MLflow ``ModelVersion``) that ``uri`` names now, through ``client``.

    Raises ValueError for a malformed URI or a name without versions; MLflow's own error for an
    unknown alias or version."""
    name, alias, version = parse_model_uri(uri)
    if alias:
        return client.get_model_version_by_alias(name, alias)
    if version:
        return client.get_model_version(name, version)
    versions = client.search_model_versions(f"name='{name}'", order_by=["version_number DESC"], max_results=1)
    if not versions:
        raise ValueError(f"no versions of registered model {name!r}")
    return versions[0]


def newest_version(client, name: str):
    """The newest version of registered model ``name``, or None when it has none (or does not exist)."""
    try:
        versions = client.search_model_versions(f"name='{name}'", order_by=["version_number DESC"], max_results=1)
    except Exception:  # an unknown model on some stores
        return None
    return versions[0] if versions else None


def key(text: str) -> str:
    """``text`` as an MLflow param, metric or tag key (characters MLflow refuses become ``_``)."""
    return _BAD_KEY_CHARS.sub("_", str(text))[:MAX_KEY]


def truncate(value, limit: int) -> str:
    """``value`` as text within ``limit`` characters (lists as JSON; a longer text ends in ``...``)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str) if isinstance(value, (list, tuple)) \
        else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def flatten_params(params: dict, prefix: str = "") -> dict[str, str]:
    """Nested mapping -> ``{"a.b": "value"}`` with keys and values within MLflow's limits."""
    out: dict[str, str] = {}
    for k, v in (params or {}).items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten_params(v, name + "."))
        else:
            out[key(name)] = truncate("" if v is None else v, MAX_PARAM_VALUE)
    return out
