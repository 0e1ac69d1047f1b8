"""registry/names.py: the aliases, the model names and the one rule for ``models:/`` URIs, which
lineage, artifact checks and the service all resolve through."""

import mlflow
import pytest

from causal_router.registry import names
from causal_router.registry.names import (
    CHALLENGER,
    CHAMPION,
    INTERVAL_NAME,
    endpoint_name,
    format_lambda,
    model_uri,
    parse_model_uri,
    resolve_version,
)


def test_aliases_and_names():
    assert (CHALLENGER, CHAMPION) == ("challenger", "champion")
    assert INTERVAL_NAME == "causal-router-interval" and endpoint_name(3700.0) == "causal-router-endpoint-3700"
    assert format_lambda(0.5) == "0p5" and endpoint_name(12.25) == "causal-router-endpoint-12p25"


@pytest.mark.parametrize("uri, parsed", [
    ("models:/causal-router-interval@champion", ("causal-router-interval", "champion", None)),
    ("models:/causal-router-endpoint-0/3", ("causal-router-endpoint-0", None, "3")),
    ("models:/causal-router-interval", ("causal-router-interval", None, None)),  # the newest version
    ("causal-router-interval@challenger", ("causal-router-interval", "challenger", None)),  # lineage's short form
    ("  causal-router-interval/12 ", ("causal-router-interval", None, "12")),
])
def test_one_rule_accepts_what_lineage_and_the_service_accepted(uri, parsed):
    assert parse_model_uri(uri) == parsed


@pytest.mark.parametrize("uri", ["runs:/abc/model", "runs:/123", "models:/a/b", "models:/", "", "a@", None,
                                 "models:/a@b/c"])
def test_other_uris_are_refused_naming_the_forms(uri):
    with pytest.raises(ValueError, match="models:/NAME@ALIAS"):
        parse_model_uri(uri)


def test_the_service_and_lineage_use_the_one_rule():
    from causal_router.registry import artifacts, lineage
    from causal_router.serving import model

    assert model.parse_model_uri is names.parse_model_uri and lineage.resolve_version is names.resolve_version
    assert not hasattr(model, "resolve_version") or model.resolve_version is names.resolve_version
    assert "resolve_version" not in vars(artifacts)  # imported where it is used, from names


def test_model_uri():
    assert model_uri("x", alias="champion") == "models:/x@champion" and model_uri("x", version=3) == "models:/x/3"
    assert model_uri("x") == "models:/x" and parse_model_uri(model_uri("x", version=3)) == ("x", None, "3")
    with pytest.raises(ValueError):
        model_uri("x", alias="a", version=1)


def test_resolve_version_by_alias_version_and_newest(store, routerset_dir):
    from causal_router.registry.pyfunc import log_router_model
    from causal_router.serving.model import _current_version

    c = mlflow.MlflowClient()
    with pytest.raises(ValueError, match="no versions"):
        resolve_version(c, "models:/nothing-here")
    for _ in range(2):
        with mlflow.start_run():
            log_router_model(routerset_dir, "router", "rm-interval", registered_model_name=INTERVAL_NAME)
    c.set_registered_model_alias(INTERVAL_NAME, CHAMPION, "1")
    assert str(resolve_version(c, f"models:/{INTERVAL_NAME}@champion").version) == "1"
    assert str(resolve_version(c, f"models:/{INTERVAL_NAME}/2").version) == "2"
    assert str(resolve_version(c, INTERVAL_NAME).version) == "2"  # the newest
    assert _current_version(f"models:/{INTERVAL_NAME}@champion") == "1"
    assert _current_version(f"models:/{INTERVAL_NAME}") == "2"
    assert _current_version(f"models:/{INTERVAL_NAME}/7") == "7"  # pinned: the store is not asked
