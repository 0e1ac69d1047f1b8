"""The gateway under a budget: requests without a lambda get the controller's, and the controller reads
the calls' recorded costs (the ``outcomes`` table) without any feedback."""

import pytest

from tests.serving.test_gateway import ASK, client, gw, stubs, upstreams  # noqa: F401 (fixtures)

pytest.importorskip("openai")


def test_the_gateway_serves_the_controllers_lambda_and_steers_on_its_recorded_costs(gw, settings):  # noqa: F811
    srv = gw(budget=1e-6, budget_lam0=0.0, explore=0.0)  # every call costs more than the budget
    gov = srv.server.config.app.state.service.budget
    gov.poll = 0.0
    c = client(srv)
    lams = []
    for i in range(4):
        msgs = [*ASK[:1], {"role": "user", "content": f"budget question {i}"}]
        raw = c.chat.completions.with_raw_response.create(model="causal-router", messages=msgs)
        assert raw.headers["x-causal-router-budget"] == "controlled"
        lams.append(float(raw.headers["x-causal-router-lam"]))
    assert lams[0] == 0.0 and lams[-1] > lams[0]  # overspent: lambda rises
    assert gov.controller.n >= 3 and gov.report()["costed_decisions"] == 4  # the outcomes' costs, no feedback
    raw = c.chat.completions.with_raw_response.create(model="causal-router", messages=ASK,
                                                      extra_body={"causal_router": {"lam": 5.0}})
    assert raw.headers["x-causal-router-budget"] == "override" and float(raw.headers["x-causal-router-lam"]) == 5.0
