"""The registered pyfunc loads where causal-router is not installed: it ships its own code, and the
prediction path needs none of the pipeline's libraries (Prefect, DVC, Typer, Great Expectations)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.serving.conftest import URI

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import importlib.abc, json, sys
# causal-router itself and the pipeline's libraries are not importable here
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("/src")]
BLOCK = {"causal_router", "prefect", "dvc", "typer", "great_expectations", "distributed", "psycopg"}
class Block(importlib.abc.MetaPathFinder):
    allow = False
    def find_spec(self, name, path, target=None):
        top = name.split(".")[0]
        if top in BLOCK and not (top == "causal_router" and Block.allow):
            raise ImportError(f"{name} is blocked")
        return None
sys.meta_path.insert(0, Block())
try:
    import causal_router  # noqa: F401
    raise SystemExit("causal_router should not be importable before loading the model")
except ImportError:
    pass
Block.allow = True  # from now on, only where the model puts it on sys.path
import mlflow, numpy as np, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
import causal_router
X = np.random.default_rng(0).normal(size=(5, 4))
df = pd.DataFrame(X, columns=[f"f{i}" for i in range(4)])
out = model.predict(df, params={"lam": 10.0, "explore": 0.5, "seed": 1})
print(json.dumps({"file": causal_router.__file__, "models": out["model"].tolist(),
                  "propensity": out["propensity"].tolist(), "blocked_loaded": sorted(
                      m for m in sys.modules if m.split(".")[0] in BLOCK - {"causal_router"})}))
"""


def test_the_pyfunc_ships_its_code_and_needs_no_pipeline_libraries(registry, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)  # for the test's tiny router class only (not src/)
    env["MLFLOW_TRACKING_URI"] = registry
    # (the script also drops the editable install's src/ entry from sys.path)
    out = subprocess.run([sys.executable, "-c", SCRIPT, URI], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert "/code/causal_router/" in res["file"]  # the model's own copy of the package
    assert len(res["models"]) == 5 and all(0 < p <= 1 for p in res["propensity"])
    assert res["blocked_loaded"] == []
