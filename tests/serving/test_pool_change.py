"""A running service under change (serving/service.py, policy/exploration.py:pool_probabilities): a model
new to the served pool gets its cold-start share with exact propensities, a removed model is never drawn,
and a new price holds from the next request."""

import json
import os

import numpy as np

from causal_router.serving.store import DecisionStore
from tests.serving.tiny import MODELS, LinearRouter, TinyEncoder


def _service(tmp_path, **settings):
    from causal_router.serving.model import ServedModel
    from causal_router.serving.service import RouteService
    from causal_router.serving.settings import ServeSettings

    class H:
        current = ServedModel("m", "1", list(MODELS), LinearRouter(), (0.0, 100.0), None, "tiny-d4")

    store = DecisionStore(f"sqlite:///{tmp_path / 'd.db'}")
    prices = settings.pop("price_path", None)
    s = ServeSettings(seed=0, strategy="spread", poll_seconds=0, **settings)
    from causal_router.settings.prices import load_prices

    return RouteService(s, H, store, TinyEncoder(), np.random.default_rng(0),
                        load_prices(prices) if prices else None, prices), store


def _route(service, n, explore=0.1, tag="r"):
    from causal_router.serving.service import RouteItem

    return service.handle([RouteItem([f"{tag}{i}" for i in range(n)], 0.0, explore, tag)])[0]


def test_a_new_model_gets_its_cold_start_share_with_exact_propensities(tmp_path):
    """model-d, in serve.models but unknown to the router and without outcomes, is drawn with
    probability exactly cold_start_share (0.05) on every decision; each logged propensities vector
    covers the pool and sums to 1; its logged propensity is the probability it was drawn with."""
    service, store = _service(tmp_path, explore=0.1, floor=0.01, models=[*MODELS, "model-d"],
                              cold_start_share=0.05, cold_start_outcomes=10)
    try:
        out = _route(service, 4000)
        drawn = np.array([d["model"] == "model-d" for d in out])
        assert abs(drawn.mean() - 0.05) < 0.015
        np.testing.assert_allclose([d["propensity"] for d in out if d["model"] == "model-d"], 0.05)
        import sqlalchemy as sa

        from causal_router.serving.tables import decisions

        with store.engine.connect() as conn:
            logged = conn.execute(sa.select(decisions.c.model, decisions.c.propensity,
                                            decisions.c.propensities)).all()
        for model, p, vec in logged:
            vec = json.loads(vec)
            assert set(vec) == {*MODELS, "model-d"} and abs(sum(vec.values()) - 1) < 1e-9
            assert vec["model-d"] == 0.05 and abs(vec[model] - p) < 1e-12
        # explore 0 (a shadow run) is the deterministic router: no cold start
        assert all(d["model"] != "model-d" and d["propensity"] == 1.0 for d in _route(service, 200, 0.0, "s"))
    finally:
        store.close()


def test_cold_start_ends_with_enough_ingested_outcomes(tmp_path):
    """Once the decision log holds cold_start_outcomes ingested feedback rows for the new model, it
    gets no more than the router's policy gives it (0, as the router does not know it)."""
    service, store = _service(tmp_path, explore=0.1, floor=0.01, models=[*MODELS, "model-d"],
                              cold_start_share=0.5, cold_start_outcomes=3)
    try:
        out = _route(service, 200)
        new = [d["decision_id"] for d in out if d["model"] == "model-d"][:3]
        assert len(new) == 3
        for did in new:
            store.add_feedback(did, 1.0, 0.0, None)
        assert service.outcomes(service.holder.current, ["model-d"])["model-d"] == 0  # not ingested yet
        store.mark_ingested({did: ("added", None) for did in new})
        assert all(d["model"] != "model-d" for d in _route(service, 300, tag="after"))
    finally:
        store.close()


def test_a_removed_model_is_never_drawn_and_the_others_renormalise_exactly(tmp_path):
    """model-c left out of serve.models: no decision goes to it; every logged vector gives it 0 and
    the router's other probabilities renormalised (they sum to 1, the drawn one is the propensity)."""
    from causal_router.policy.exploration import ExplorationPolicy, pool_probabilities

    service, store = _service(tmp_path, explore=0.3, floor=0.05, models=["model-a", "model-b"])
    try:
        out = _route(service, 2000, 0.3)
        assert {d["model"] for d in out} == {"model-a", "model-b"}
        X = TinyEncoder().encode([f"r{i}" for i in range(2000)])
        P = ExplorationPolicy(0.3, 0.05).probabilities(LinearRouter().scores(X, 0.0), 0.3, np.zeros(3))
        expect = P[:, :2] / P[:, :2].sum(1, keepdims=True)
        got = np.array([d["propensity"] for d in out])
        idx = np.array([["model-a", "model-b"].index(d["model"]) for d in out])
        np.testing.assert_allclose(got, expect[np.arange(2000), idx], rtol=1e-12)
        np.testing.assert_allclose(pool_probabilities(P, MODELS, ["model-a", "model-b"]), expect)
    finally:
        store.close()


def test_a_price_change_holds_from_the_next_request(tmp_path):
    """Editing the price sheet of a running service: the next feedback is costed at the new price
    (no restart)."""
    sheet = tmp_path / "prices.yaml"
    sheet.write_text("model-a: {input: 1, output: 2}\nmodel-b: {input: 1, output: 2}\nmodel-c: {input: 1, output: 2}\n")
    service, store = _service(tmp_path, explore=0.0, price_path=sheet)
    try:
        d = {"model": "model-c", "input_tokens": 1000}
        assert service.cost(d, 1000) == (1000 * 1 + 1000 * 2) / 1e6
        sheet.write_text("model-a: {input: 1, output: 2}\nmodel-b: {input: 1, output: 2}\n"
                         "model-c: {input: 0.5, output: 1}\n")
        st = os.stat(sheet)
        os.utime(sheet, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a later mtime on any file system
        assert service.cost(d, 1000) == (1000 * 0.5 + 1000 * 1) / 1e6
        sheet.write_text("not: [a price sheet")  # a broken edit keeps the last good prices
        os.utime(sheet, ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
        assert service.cost(d, 1000) == (1000 * 0.5 + 1000 * 1) / 1e6
    finally:
        store.close()


def test_models_the_router_routes_among_are_warm_however_rare(tmp_path):
    """The cold start is for models new to the router: one it routes among explores by the policy alone,
    even with 0 or 3 training rows (a share for every rare model changed the stationary loop)."""
    service, store = _service(tmp_path, explore=0.1, floor=0.01, models=[*MODELS, "model-d"],
                              cold_start_share=0.2, cold_start_outcomes=50)
    try:
        model = service.holder.current
        model.rows_per_model = {"model-a": 500, "model-b": 3, "model-c": 0}
        out = service.outcomes(model, [*MODELS, "model-d"])
        assert all(out[m] == float("inf") for m in MODELS) and out["model-d"] == 0
        routed = _route(service, 3000)
        shares = {m: np.mean([d["model"] == m for d in routed]) for m in (*MODELS, "model-d")}
        # the new model has its share; the router's least chosen model has no forced share
        assert shares["model-d"] >= 0.18 and min(shares[m] for m in MODELS) < 0.1, shares
    finally:
        model.rows_per_model = None
        store.close()


def test_a_model_that_joined_the_pool_keeps_its_share_after_the_router_takes_it_in(tmp_path):
    """A model absent from the log's first pool is new: once the served router routes among it (after a
    retrain on its few rows), it keeps cold_start_share until cold_start_outcomes ingested outcomes; the
    models of the first pool stay warm, however rarely the router picks them."""
    from causal_router.serving.service import RouteItem

    service, store = _service(tmp_path, explore=0.1, floor=0.01, models=["model-a", "model-b"],
                              cold_start_share=0.2, cold_start_outcomes=50)
    try:
        _route(service, 50, tag="first")  # the log begins with the pool {model-a, model-b}
        assert store.first_pool() == {"model-a", "model-b"}
        service.pool = list(MODELS)  # model-c joins; the router (H) already routes among it
        out = service.outcomes(service.holder.current, MODELS)
        assert out["model-a"] == out["model-b"] == float("inf") and out["model-c"] == 0
        # at lam 100 the router ranks model-c last: without its share it would get only the exploration
        routed = service.handle([RouteItem([f"x{i}" for i in range(3000)], 100.0, 0.1, "x")])[0]
        share = np.mean([d["model"] == "model-c" for d in routed])
        assert share >= 0.18, share
        np.testing.assert_array_less(0.2 - 1e-12, [d["propensity"] for d in routed if d["model"] == "model-c"])
    finally:
        store.close()
