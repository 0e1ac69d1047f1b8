"""The router pyfunc: loads by alias, routes precomputed features, answers lambda per request."""

import mlflow
import numpy as np
import pandas as pd
import pytest

from causal_router.registry.pyfunc import (
    INTERVAL_METHOD,
    RouterModel,
    _explode_lists,
    default_lambda,
    features_frame,
    log_router_model,
    pip_requirements,
)
from causal_router.registry.runs import INTERVAL_NAME

LAMS = [0.0, 1000.0, 2000.0]


@pytest.fixture
def interval_model(store, routerset_dir):
    with mlflow.start_run():
        info = log_router_model(routerset_dir, "interval", INTERVAL_METHOD, registered_model_name=INTERVAL_NAME)
    mlflow.MlflowClient().set_registered_model_alias(INTERVAL_NAME, "challenger", info.registered_model_version)
    return mlflow.pyfunc.load_model(f"models:/{INTERVAL_NAME}@challenger")


def test_predict_returns_model_names_and_responds_to_lambda(interval_model, routerset, problem):
    X = problem["holdout"].X
    df = features_frame(X)
    low = interval_model.predict(df, params={"lam": 0.0})
    high = interval_model.predict(df, params={"lam": 2000.0})
    assert list(low.columns) == ["model", "model_index", "propensity"] and len(low) == len(X)
    assert (low["propensity"] == 1.0).all()  # explore defaults to 0: the router's choice
    assert set(low["model"]) <= set(routerset.models) and set(high["model"]) <= set(routerset.models)
    assert (low["model"] == np.asarray(routerset.models, dtype=object)[low["model_index"]]).all()
    # the cheapest model takes over as lambda grows
    assert (high["model"] == "model-0").mean() > (low["model"] == "model-0").mean() + 0.2
    expected = routerset.get(INTERVAL_METHOD).predict(X, 2000.0)
    np.testing.assert_array_equal(high["model_index"].to_numpy(), expected)


def test_encoder_path_can_be_set_at_load_time(interval_model, store):
    model = interval_model.unwrap_python_model()
    assert model.config["method"] == INTERVAL_METHOD and model.config["models"] == ["model-0", "model-1", "model-2"]
    assert model.config["encoder_path"] == ""
    again = mlflow.pyfunc.load_model(f"models:/{INTERVAL_NAME}@challenger", model_config={"encoder_path": "/enc"})
    assert again.unwrap_python_model().config["encoder_path"] == "/enc"


def test_lam_is_required_and_range_checked(interval_model, problem):
    sig = interval_model.metadata.signature
    defaults = {p.name: p.default for p in sig.params.params}
    assert defaults == {"lam": None, "method": INTERVAL_METHOD, "explore": 0.0, "floor": 0.01, "seed": None}
    df = features_frame(problem["holdout"].X)
    with pytest.raises(Exception, match=r"lam is required.*\[0, 2000\]"):
        interval_model.predict(df)
    with pytest.raises(Exception, match=r"\[0, 2000\].*5000"):
        interval_model.predict(df, params={"lam": 5000.0})
    best = interval_model.predict(df, params={"method": "best-single", "lam": 0.0})
    assert best["model"].nunique() == 1


def test_exploring_predictions_report_their_propensity(interval_model, problem, routerset):
    from causal_router.policy.exploration import ExplorationPolicy

    X = problem["holdout"].X
    out = interval_model.predict(features_frame(X), params={"lam": 1000.0, "explore": 0.3, "floor": 0.05, "seed": 3})
    P = ExplorationPolicy(explore=0.3, floor=0.05).probabilities(routerset.get(INTERVAL_METHOD).scores(X, 1000.0))
    # (features travel as float32 through the pyfunc)
    np.testing.assert_allclose(out["propensity"], P[np.arange(len(X)), out["model_index"]], rtol=1e-5)
    assert out["propensity"].min() >= 0.05 and (out["propensity"] < 1).all()
    again = interval_model.predict(features_frame(X), params={"lam": 1000.0, "explore": 0.3, "floor": 0.05, "seed": 3})
    pd.testing.assert_frame_equal(out, again)  # seeded


def test_models_carry_an_input_example_and_their_own_code(interval_model):
    from pathlib import Path

    from mlflow.models import Model

    path = Path(mlflow.artifacts.download_artifacts(f"models:/{INTERVAL_NAME}@challenger"))
    assert (path / "code" / "causal_router" / "registry" / "pyfunc.py").is_file()
    meta = Model.load(path)
    example = meta.load_input_example(str(path))
    assert list(example["prompt"]) and {"f0", "f3"} <= set(example.columns)
    params = meta.load_input_example_params(str(path))
    assert set(params) == {"lam"}
    out = interval_model.predict(example, params=params)  # the example answers
    assert len(out) == 1 and out["propensity"].iloc[0] == 1.0


def test_requirements_are_pinned(interval_model):
    reqs = pip_requirements()
    names = {r.split("==")[0] for r in reqs}
    assert {"torch", "scikit-learn", "numpy", "pandas", "joblib"} <= names
    assert all("==" in r and "+" not in r for r in reqs)


def test_input_without_prompt_or_features_is_refused(interval_model):
    with pytest.raises(Exception, match="prompt"):
        interval_model.predict(pd.DataFrame({"input_tokens": [10.0]}), params={"lam": 0.0})


def test_prompts_embedded_with_another_encoder_are_refused(routerset_dir):
    model = RouterModel()

    class Ctx:
        artifacts = {"routers": str(routerset_dir)}
        model_config = {"method": INTERVAL_METHOD, "lam": 0.0}

    model.load_context(Ctx())
    with pytest.raises(ValueError, match="synthetic-d4"):
        model.predict(None, ["what is 2 + 2?"], params={"lam": 0.0})


def test_prompt_lists_in_one_cell_become_rows():
    # what MLflow makes of {"prompt": [...], "input_tokens": [...]}
    df = pd.DataFrame({"prompt": [["a", "b", "c"]], "input_tokens": [[1.0, 2.0, 3.0]]})
    out = _explode_lists(df)
    assert out["prompt"].tolist() == ["a", "b", "c"] and out["input_tokens"].astype(float).tolist() == [1, 2, 3]


def test_direct_call_with_features(routerset_dir, routerset, problem):
    model = RouterModel()

    class Ctx:
        artifacts = {"routers": str(routerset_dir)}
        model_config = {"method": INTERVAL_METHOD, "lam": 0.0}

    model.load_context(Ctx())
    X = problem["holdout"].X[:5]
    out = model.predict(None, features_frame(X), params={"lam": 0.0})
    np.testing.assert_array_equal(out["model_index"], routerset.get(INTERVAL_METHOD).predict(X, 0.0))


def test_default_lambda():
    assert default_lambda(LAMS, INTERVAL_METHOD) == 1000.0
    assert default_lambda([0.0, 100.0, 500.0], INTERVAL_METHOD) == 250.0
    assert default_lambda(LAMS, "rm-softmax", 2000.0) == 2000.0
