"""The README's pyfunc snippet runs as written in embedded mode, from a subfolder of the project,
without MLFLOW_TRACKING_URI and without leaving a stray store (server mode: `make e2e`)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

ROOT = Path(__file__).resolve().parents[2]


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- pyfunc-snippet:start -->\s*```python\n(.*?)```\s*<!-- pyfunc-snippet:end -->", text, re.S)
    assert m, "README lacks the pyfunc snippet markers"
    return m.group(1)


@pytest.mark.timeout(300)
def test_readme_pyfunc_snippet_runs_embedded(store, problem):
    import numpy as np

    from causal_router.features.embed import default_encoder
    from causal_router.policy.data import build_routing_data
    from causal_router.policy.routerset import RouterSet
    from causal_router.policy.training import fit_routers
    from causal_router.registry.pyfunc import log_router_model

    # a champion that takes prompts: best-single on features of the default encoder's width and key
    enc = default_encoder()
    W = np.random.default_rng(0).normal(size=(problem["train"].X.shape[1], enc.dim))
    tr, va = problem["train"], problem["val"]
    data = build_routing_data(tr.logs, tr.X @ W, va.logs, va.X @ W, models=problem["all"].models,
                              propensity="logged")
    routers, _ = fit_routers(data, [0.0, 7400.0], methods=["best-single"])
    rs = RouterSet(list(problem["all"].models), [0.0, 7400.0], routers, enc.key, {}).save(store / "set")
    models = list(problem["all"].models)
    with mlflow.start_run():
        info = log_router_model(rs, "router", "best-single", registered_model_name="causal-router-interval")
    mlflow.MlflowClient().set_registered_model_alias("causal-router-interval", "champion",
                                                     info.registered_model_version)
    (store / "params.yaml").write_text("runner: local\n")
    sub = store / "notebooks"
    sub.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    out = subprocess.run([sys.executable, "-c", readme_snippet()], cwd=sub, env=env, capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert any(m in out.stdout for m in models), out.stdout
    assert not (sub / "mlflow.db").exists() and not (sub / "mlruns").exists()
