"""Serving a budget (serve.budget, serving/budget.py) over HTTP: the controller's lambda where a request
sends none, overrides, the hard cap, GET /v1/budget (and its place in the OpenAPI schema), bad values."""

import json

import httpx
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from causal_router.cli import app
from causal_router.serving.store import DecisionStore
from tests.serving.conftest import URI
from tests.serving.tiny import MODELS, LinearRouter, TinyEncoder

PROMPTS = [f"budget prompt {i}: how much is {i} squared?" for i in range(30)]


def _governor(srv_app):
    g = srv_app.state.service.budget
    g.poll = 0.0  # read the log on every decision (the service reads it at most once a second)
    return g


def test_v1_budget_is_in_the_openapi_schema_and_404_without_a_budget(live):
    srv = live()
    spec = httpx.get(srv.url + "/openapi.json").json()
    assert "/v1/budget" in spec["paths"] and "BudgetReport" in spec["components"]["schemas"]
    r = httpx.get(srv.url + "/v1/budget")
    assert r.status_code == 404 and "serve.budget" in r.json()["message"]
    r = httpx.post(srv.url + "/v1/route", json={"prompts": ["a"]})
    assert r.status_code == 422 and "lam: is required" in r.json()["message"]


def test_the_controller_sets_lam_and_moves_it_with_the_recorded_spend(make_app, settings):
    from tests.serving.conftest import LiveServer

    a = make_app(budget=0.002, budget_lam0=30.0)
    _governor(a)
    with LiveServer(a) as srv:
        r = httpx.post(srv.url + "/v1/route", json={"prompts": PROMPTS[:5]})
        assert r.status_code == 200, r.text
        assert r.headers["x-causal-router-budget"] == "controlled"
        lam0 = float(r.headers["x-causal-router-lam"])
        assert lam0 == pytest.approx(30.0) and all(d["lam"] == lam0 for d in r.json()["decisions"])
        for d in r.json()["decisions"]:  # every decision 5x the budget: lambda must rise
            assert httpx.post(srv.url + "/v1/feedback", json={"decision_id": d["decision_id"], "score": 0.5,
                                                               "cost": 0.01}).status_code == 200
        r2 = httpx.post(srv.url + "/v1/route", json={"prompts": PROMPTS[5:7]})
        lam1 = r2.json()["decisions"][0]["lam"]
        assert lam1 > lam0
        rep = httpx.get(srv.url + "/v1/budget").json()
        assert rep["budget"] == 0.002 and rep["lam"] == pytest.approx(lam1) and rep["lam0"] == 30.0
        assert rep["decisions"] == 7 and rep["costed_decisions"] == 5 and not rep["capped"]
        assert rep["spend_since_start"] == pytest.approx(0.05)
        assert rep["spend_per_decision_window"] == pytest.approx(0.01)
    # the log keeps each decision's lambda and propensity: valid for DR
    rows = DecisionStore(settings.decisions_uri).frame("decisions")
    assert sorted(rows["lam"].round(9).unique()) == sorted({round(lam0, 9), round(lam1, 9)})
    assert rows["propensity"].between(0, 1).all() and rows["propensities"].notna().all()


def test_an_explicit_lam_overrides_the_controller_and_its_cost_counts(make_app):
    from tests.serving.conftest import LiveServer

    a = make_app(budget=0.002, budget_lam0=30.0)
    g = _governor(a)
    with LiveServer(a) as srv:
        r = httpx.post(srv.url + "/v1/route", json={"prompts": PROMPTS[:2], "lam": 80.0})
        assert r.headers["x-causal-router-budget"] == "override"
        assert all(d["lam"] == 80.0 for d in r.json()["decisions"])
        for d in r.json()["decisions"]:
            httpx.post(srv.url + "/v1/feedback", json={"decision_id": d["decision_id"], "score": 1, "cost": 0.0})
        g.refresh(force=True)
        assert g.controller.n == 2 and g.controller.lam < 30.0  # underspent by the overrides: lambda falls
        bad = httpx.post(srv.url + "/v1/route", json={"prompts": ["x"], "lam": 1000})
        assert bad.status_code == 422 and "[0, 100]" in bad.json()["message"]


def test_the_hard_cap_routes_everything_to_the_cheapest_model(make_app):
    from tests.serving.conftest import LiveServer

    a = make_app(budget=0.002, budget_lam0=0.0, budget_hard=0.015, explore=0.5)
    _governor(a)
    with LiveServer(a) as srv:
        r = httpx.post(srv.url + "/v1/route", json={"prompts": PROMPTS[:3]})
        assert r.headers["x-causal-router-budget"] == "controlled"
        cost = {"model-a": 0.006, "model-b": 0.01, "model-c": 0.02}
        for d in r.json()["decisions"]:
            httpx.post(srv.url + "/v1/feedback", json={"decision_id": d["decision_id"], "score": 1,
                                                       "cost": cost[d["model"]]})
        spent = sum(cost[d["model"]] for d in r.json()["decisions"])
        for body in ({"prompts": PROMPTS[3:13]}, {"prompts": PROMPTS[13:16], "lam": 0.0}):  # overrides too
            r = httpx.post(srv.url + "/v1/route", json=body)
            assert r.status_code == 200 and r.headers["x-causal-router-budget"] == "capped"
            # no price sheet: the lowest mean recorded cost, or (not every model seen) the router's choice at
            # the top of its interval; model-a either way
            assert [d["model"] for d in r.json()["decisions"]] == ["model-a"] * len(body["prompts"])
            assert all(d["propensity"] == 1.0 for d in r.json()["decisions"])
        rep = httpx.get(srv.url + "/v1/budget").json()
        assert rep["capped"] and rep["hard_cap_per_hour"] == 0.015 and rep["spend_last_hour"] == pytest.approx(spent)


def test_the_cheapest_model_is_the_price_sheets(make_app):
    from causal_router.serving.budget import BudgetGovernor

    a = make_app(budget=0.002)
    g: BudgetGovernor = a.state.service.budget
    g.prices = {"model-a": (5.0, 5.0), "model-b": (0.1, 0.2), "model-c": (1.0, 1.0)}
    P = g.cap(np.full((2, 3), 1 / 3), MODELS, lambda: None)
    assert P.tolist() == [[0.0, 1.0, 0.0]] * 2
    g.prices = {}  # no prices, no recorded costs: the router's own choice at the top of its interval
    X = TinyEncoder().encode(PROMPTS[:4])
    P = g.cap(np.full((4, 3), 1 / 3), MODELS, lambda: LinearRouter().scores(X, 100.0))
    assert (P.argmax(1) == LinearRouter().scores(X, 100.0).argmax(1)).all() and (P.max(1) == 1).all()
    assert 0 < g.controller.lam < 100  # no calibration: the middle of the interval (in the warped coordinate)


@pytest.mark.parametrize("args, words", [
    (["--budget", "-1"], "--budget must be a finite number"), (["--budget", "0"], "--budget must be"),
    (["--budget", "nan"], "--budget must be"), (["--budget", "1", "--budget-calibration", "nowhere.json"],
                                                "--budget-calibration")])
def test_serve_refuses_bad_budgets_in_one_line(args, words):
    out = CliRunner().invoke(app, ["serve", *args])
    assert out.exit_code == 1 and words in out.output and len(out.output.strip().splitlines()) == 1, out.output


@pytest.mark.parametrize("value", ["-0.5", "0", ".nan"])
def test_params_refuses_a_bad_serve_budget(tmp_path, value):
    from causal_router.errors import SettingsError
    from causal_router.serving.settings import ServeSettings

    p = tmp_path / "params.yaml"
    p.write_text(f"serve:\n  budget: {value}\n")
    with pytest.raises((SettingsError, ValueError), match="budget") as err:
        ServeSettings.from_params(p)
    assert "\n" not in str(err.value).strip()


# -- causal-router calibrate on a registered model -------------------------------------------------------
@pytest.fixture
def tiny_encoder(monkeypatch):
    from causal_router.registry.pyfunc import RouterModel

    monkeypatch.setattr(RouterModel, "encoder", property(lambda self: TinyEncoder()))


@pytest.fixture
def tiny_logs(tmp_path):
    rng = np.random.default_rng(0)
    prompts = [f"calibration prompt {i}" for i in range(400)]
    t = rng.integers(0, 3, size=len(prompts))
    unit = LinearRouter().unit_cost
    df = pd.DataFrame({"prompt_id": [f"c{i}" for i in range(len(prompts))], "prompt": prompts,
                       "model": [MODELS[k] for k in t], "score": rng.uniform(size=len(prompts)).round(3),
                       "cost": unit[t] * 0.1, "propensity": 1 / 3})
    path = tmp_path / "holdout.parquet"
    df.to_parquet(path)
    return path


def test_calibrate_prints_and_writes_the_lambda_of_a_budget(registry, tiny_encoder, tiny_logs, tmp_path):
    out_file = tmp_path / "cal.json"
    out = CliRunner().invoke(app, ["calibrate", URI, "--logs", str(tiny_logs), "--budget", "0.0004",
                                   "--out", str(out_file), "--cv", "2", "--cache-dir", str(tmp_path / "cache")])
    assert out.exit_code == 0, out.output
    assert "meets a budget of 0.0004 USD per decision" in out.output and "DR cost" in out.output
    res = json.loads(out_file.read_text())
    assert res["met"] and 0 < res["lam"] < 100 and res["cost"]["value"] <= 0.0004
    assert res["cost"]["ci_low"] <= res["cost"]["value"] <= res["cost"]["ci_high"]
    share = CliRunner().invoke(app, ["calibrate", URI, "--logs", str(tiny_logs), "--strong-share", "model-c=0.25",
                                     "--cv", "2", "--cache-dir", str(tmp_path / "cache")])
    assert share.exit_code == 0 and "at most 25.0% of prompts to model-c" in share.output, share.output


@pytest.mark.parametrize("args, words", [
    (["--budget", "0"], "--budget must be"), (["--budget", "-2"], "--budget must be"),
    (["--budget", "nan"], "--budget must be"), ([], "one of them"),
    (["--budget", "1", "--strong-share", "model-a=0.5"], "one of them"),
    (["--strong-share", "model-c=1.5"], "fraction in (0, 1]"), (["--strong-share", "model-c"], "MODEL=FRACTION"),
    (["--strong-share", "gpt-x=0.5"], "unknown model 'gpt-x'")])
def test_calibrate_refuses_bad_values_in_one_line(registry, tiny_encoder, tiny_logs, args, words):
    out = CliRunner().invoke(app, ["calibrate", URI, "--logs", str(tiny_logs), *args])
    assert out.exit_code != 0 and words in out.output, out.output
    assert len(out.output.strip().splitlines()) == 1 and "Traceback" not in out.output


def test_a_calibration_files_spend_peak_is_the_controllers_floor(make_app, tmp_path):
    import json

    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps({"lam": 40.0, "lam_floor": 25.0}))
    a = make_app(budget=0.002, budget_calibration=str(cal))
    gov = _governor(a)
    assert gov.lam0 == 40.0 and gov.controller.lo == 25.0 and gov.controller.lam == pytest.approx(40.0)
    for _ in range(5000):
        gov.controller.observe(0.0)  # nothing spent: lambda falls, to the floor and no lower
    assert gov.controller.lam == pytest.approx(25.0)
    assert gov.report()["lam_range"][0] == 25.0


@pytest.mark.parametrize("fill_max", [1.0, 0.0])
def test_a_budget_the_router_cannot_spend_moves_traffic_to_the_models_that_reach_it(make_app, settings, fill_max):
    from tests.serving.conftest import LiveServer

    a = make_app(budget=0.002, budget_lam0=0.0, budget_fill=fill_max, floor=0.01)
    g = _governor(a)
    g.controller.observe(0.05, "model-a")  # the one model whose recorded cost reaches the budget
    for _ in range(3000):
        g.controller.observe(0.0, "model-c")  # the router's choices at its floor spend nothing
    with LiveServer(a) as srv:
        rep = httpx.get(srv.url + "/v1/budget").json()
        r = httpx.post(srv.url + "/v1/route", json={"prompts": PROMPTS[:20], "explore": 0.05})
        assert r.status_code == 200 and r.headers["x-causal-router-budget"] == "controlled"
    rows = DecisionStore(settings.decisions_uri).frame("decisions")
    P = np.array([[json.loads(p)[m] for m in MODELS] for p in rows["propensities"]])
    assert rep["lam"] == 0.0
    if fill_max:  # all the slack: every model but model-a keeps only the exploration floor
        assert rep["fill"] == pytest.approx(1.0)
        np.testing.assert_allclose(P[:, 1:], 0.01)
        np.testing.assert_allclose(P[:, 0], 0.98)
    else:  # a cap: served at the floor, the router's own policy (model-c its choice)
        assert rep["fill"] == 0.0 and (P[:, 0] < 0.5).all()
    # the recorded propensity is the drawn model's probability in that policy
    drawn = np.array([MODELS.index(m) for m in rows["model"]])
    np.testing.assert_allclose(rows["propensity"], P[np.arange(len(P)), drawn])
