"""``params.yaml`` as typed settings: one pydantic model per section, one loader.

Every section and key the pipeline, the service and the retrain flow read is declared here, with
its default (the value the committed ``params.yaml`` sets, where it sets one). Values read as
attributes (``settings.crossfit.cv``); ``model_dump()`` gives the dict view where one is really
needed (MLflow's params logging).

:func:`load_settings` is the only way to read a params file: a missing file, YAML that does not
parse, an unknown section or key, or a value of the wrong type is a :class:`SettingsError` (or a
:class:`MissingFileError`) whose one line names the file and the key. Sections or keys the file
leaves out take the defaults below.

The exploration defaults of the served policy live here too (:data:`EXPLORE` ...):
:class:`~causal_router.policy.exploration.ExplorationPolicy` takes its defaults from them, and
``serve`` in ``params.yaml`` sets what the service runs with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import MissingFileError, SettingsError

__all__ = ["CrossfitSettings", "DataSettings", "EmbedSettings", "EvaluateSettings", "IngestSettings",
           "PromoteSettings", "ServeSettings", "Settings", "TrainSettings", "ValidateSettings", "load_settings",
           "EXPLORE", "FLOOR", "TEMPERATURE", "CHALLENGER_SHARE", "STRATEGY", "STRATEGIES", "POSTERIOR_SCALE",
           "COLD_START_SHARE", "COLD_START_OUTCOMES"]

#: The served policy's exploration defaults (``serve`` in params.yaml; see :mod:`causal_router.policy.exploration`).
EXPLORE = 0.1
FLOOR = 0.01
TEMPERATURE = 1.0
CHALLENGER_SHARE = 1.0
STRATEGY = "thompson"
POSTERIOR_SCALE = 0.3
#: Cold start of a model new to the served pool (``serve.cold_start_share``, ``serve.cold_start_outcomes``).
COLD_START_SHARE = 0.05
COLD_START_OUTCOMES = 50
#: Exploration strategies (see :mod:`causal_router.policy.exploration`).
STRATEGIES = ("spread", "thompson")

#: The lambda grid of ``train`` (LLMRouter prices: the same lambda * cost range as RouterBench's).
LAMBDAS = (0.0, 3700.0, 7400.0, 14800.0, 37000.0, 74000.0)


class _Section(BaseModel):
    """A section of params.yaml: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


class DataSettings(_Section):
    """Where the logs are (``data``): paths relative to the project folder."""

    dir: str = "data"
    train: str = "data/train.parquet"
    val: str = "data/val.parquet"
    holdout: str = "data/holdout.parquet"
    test: str = "data/test.parquet"
    eval_set: str | None = "data/eval_set.parquet"


class ValidateSettings(_Section):
    positivity_floor: float = 0.001
    warn: list[str] = Field(default_factory=lambda: ["positivity_floor"])
    models: list[str] | None = None


class EmbedSettings(_Section):
    encoder: str | None = None
    max_length: int = 256
    pooling: Literal["mean", "last", "cls"] = "mean"
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "fp32"
    cache_dir: str | None = "artifacts/embedding-cache"
    shards: int = Field(1, ge=1)


class CrossfitSettings(_Section):
    cv: int = Field(5, ge=2)
    propensity: Literal["fitted", "logged"] = "fitted"
    clip: float = 0.1
    prices: str | None = "configs/prices/llmrouter_9models.yaml"
    seed: int = 0


class TrainSettings(_Section):
    lambdas: list[float] = Field(default_factory=lambda: list(LAMBDAS), min_length=1)
    methods: list[str] | None = None


class EvaluateSettings(_Section):
    lambdas: list[float] | None = None  # None: the training grid (resolved by the loader)


class PromoteSettings(_Section):
    lambdas: list[float] | None = None  # None: the training grid (resolved by the loader)
    alpha: float = 0.05
    margin: float = 0.0
    overlap: float = 0.1
    rule: Literal["estimate", "bound"] = "estimate"
    no_overlap: Literal["tie", "switch"] = "tie"
    outcome_rows: Literal["holdout", "train+holdout"] = "holdout"
    keep_versions: int | None = 5

    def gate(self) -> dict:
        """The gate's own settings (``alpha``, ``margin``, ``overlap``, ``rule``, ``no_overlap``,
        ``outcome_rows``) as keyword arguments."""
        return {"alpha": self.alpha, "margin": self.margin, "overlap": self.overlap, "rule": self.rule,
                "no_overlap": self.no_overlap, "outcome_rows": self.outcome_rows}


class ServeSettings(_Section):
    """What ``causal-router serve`` runs with: params.yaml's ``serve`` section, then the command's options.

    Attributes
    ----------
    model_uri : str
        ``models:/NAME@ALIAS`` (reloaded when the alias moves) or ``models:/NAME/VERSION``.
    explore : float
        Default exploration rate of the served policy (a request may pass its own).
    floor : float
        Least probability of every model whenever exploring (bounds the next round's DR weights).
    temperature : float
        How the exploration spreads over the other models (large: uniform; small: runners-up).
    challenger_share : float
        Share of that spread given to the registered challenger's choice where it differs from the
        champion's (0: the challenger is not loaded), so that the gate has rows to judge it on.
    strategy : str
        ``thompson`` (explore where the router's posterior is unsure, at least ``explore``) or
        ``spread`` (exactly ``explore``); see :mod:`causal_router.policy.exploration`.
    posterior_scale : float
        ``thompson``: scale of the posterior's spread (smaller explores less).
    seed : int or None
        Seed of the draws (None: fresh entropy).
    poll_seconds : float
        How often the alias is checked.
    batch_window_ms : float
        How long a request waits for others to be embedded with it (under load the window grows
        to a tenth of the last batch's time, at most 100 ms; requests already queued always join).
    max_batch : int
        Most prompts embedded together.
    max_body_bytes, max_prompt_chars, max_prompts : int
        Request limits (413 beyond them).
    prices : str or None
        Price sheet used to cost feedback that carries token counts instead of a cost
        (:meth:`from_params`: ``crossfit.prices`` unless the section sets one).
    decisions_uri : str or None
        Decision log URI (None: ``$CAUSAL_ROUTER_DECISIONS_URI`` or ``decisions/decisions.db``).
    encoder : str or None
        ``module:callable`` returning the encoder (None: the model's own encoder).
    docs : {"open", "token", "off"}
        ``/docs``, ``/redoc`` and ``/openapi.json`` (the API's shape, no data): ``open`` (no token needed),
        ``token`` (behind the token like every endpoint but ``/healthz``) or ``off`` (not served).
    root : str or None
        Project folder (``mlruns/``, ``decisions/``, a relative price sheet); None: the project found
        from the current folder (:func:`causal_router.settings.env.find_project_root`).
    gateway : str or None
        LiteLLM ``model_list`` file (:mod:`causal_router.serving.gateway_config`): serve
        ``POST /v1/chat/completions`` and call the chosen model (None: no gateway).
    gateway_model : str
        The model name clients ask the gateway for.
    gateway_client : {"direct", "litellm"}
        How the gateway calls a model: ``direct``, an OpenAI-compatible deployment (``openai/NAME`` at an
        ``api_base``, no other call parameters) over one pooled HTTP client and every other one through
        LiteLLM's SDK; ``litellm``, every one through LiteLLM (:mod:`causal_router.serving.upstream`).
    lam : float or None
        The gateway's lambda when a request sets none (body ``causal_router.lam``, then the header
        ``x-causal-router-lam``); None: such a request gets 422.
    max_tokens : int
        Plausibility limit of a token count (``output_tokens`` of feedback; 422 above it, quarantined at
        ingest). At most 2**31 - 1, the decision log's INTEGER range on PostgreSQL.
    max_cost : float or None
        Plausibility limit of a cost in USD (422 above it, quarantined at ingest). None: ``cost_factor`` x
        the most expensive model's price (input + output per token) for ``max_tokens`` tokens of each,
        from the price sheet (without one: 1,000 USD). See :mod:`causal_router.validation.plausibility`.
    cost_factor : float
        Headroom of the derived ``max_cost`` over the dearest possible request (1,000).
    header_timeout_s, body_timeout_s, request_timeout_s, keepalive_timeout_s : float
        Seconds a client may take to send a request's headers (the connection is closed), its body (408),
        and the whole request (503 with ``Retry-After``); how long an idle keep-alive connection stays open.
    max_concurrent : int
        Requests handled at once (``/healthz`` aside); beyond it 503 with ``Retry-After: retry_after_s``.
    retry_after_s : int
        ``Retry-After`` of a 503 for load.
    max_batch_chars : int
        Most prompt characters in one micro-batch: a larger request is routed in several batches,
        interleaved with other clients' (fair queuing; a single prompt always fits).
    client_key : str
        What identifies a client to the fair queue: ``peer`` (its address) or a header name set by a
        trusted proxy in front (e.g. ``x-forwarded-for``).
    budget : float or None
        Target mean cost, USD per decision: the service sets lambda itself (a request's own ``lam``
        overrides it for that request; :mod:`causal_router.serving.budget` has the rule). None: off.
    budget_lam0 : float or None
        The controller's cold start (the calibrated lambda, ``causal-router calibrate``).
    budget_calibration : str or None
        A ``calibrate --out`` file whose ``lam`` is the cold start when ``budget_lam0`` is None.
    budget_hard : float or None
        Hard cap, USD per hour: once the last hour's recorded costs reach it, every decision goes to
        the cheapest model (None: no cap).
    budget_window : int
        Decisions in the controller's window (its proportional term; ``GET /v1/budget``'s window).
    budget_gain, budget_fill : float
        The controller's integral gain per recorded cost; the most share its slack moves to the models that
        reach the budget when the router underspends at its floor (0: none, the budget is a cap).
    models : list of str or None
        The served pool (None: the router's models). A router model left out gets probability 0 (its rows
        stay valid in the logs); a model the router lacks (a new one) gets the cold-start share.
    cold_start_share : float
        Least probability of each pool model the served router does not route among (a new one), while it
        has fewer than ``cold_start_outcomes`` outcomes (feedback rows), mixed into the served
        probabilities (the logged propensity stays exact); 0: off. Models the router knows explore by the
        policy, however rare.
    cold_start_outcomes : int
        Outcomes a model needs before its cold-start share ends.
    """

    model_uri: str = "models:/causal-router-interval@champion"
    explore: float = EXPLORE
    floor: float = FLOOR
    temperature: float = TEMPERATURE
    challenger_share: float = CHALLENGER_SHARE
    strategy: Literal["spread", "thompson"] = STRATEGY
    posterior_scale: float = POSTERIOR_SCALE
    seed: int | None = None
    poll_seconds: float = 10.0
    batch_window_ms: float = 5.0
    max_batch: int = 64
    max_body_bytes: int = 1 << 20
    max_prompt_chars: int = 32_000
    max_prompts: int = 64
    prices: str | None = None
    decisions_uri: str | None = None
    encoder: str | None = None
    docs: Literal["open", "token", "off"] = "open"
    root: str | None = None
    gateway: str | None = None
    gateway_model: str = Field("causal-router", min_length=1)
    gateway_client: Literal["direct", "litellm"] = "direct"
    lam: float | None = Field(None, allow_inf_nan=False)
    max_tokens: int = Field(1_000_000, ge=1, le=2**31 - 1)
    max_cost: float | None = Field(None, gt=0, allow_inf_nan=False)
    cost_factor: float = Field(1000.0, gt=0, allow_inf_nan=False)
    header_timeout_s: float = Field(10.0, gt=0)
    body_timeout_s: float = Field(30.0, gt=0)
    request_timeout_s: float = Field(60.0, gt=0)
    keepalive_timeout_s: float = Field(5.0, gt=0)
    max_concurrent: int = Field(256, ge=1)
    retry_after_s: int = Field(1, ge=0)
    max_batch_chars: int = Field(200_000, ge=1)
    client_key: str = "peer"
    budget: float | None = Field(None, gt=0, allow_inf_nan=False)
    budget_lam0: float | None = Field(None, ge=0, allow_inf_nan=False)
    budget_calibration: str | None = None
    budget_hard: float | None = Field(None, gt=0, allow_inf_nan=False)
    budget_window: int = Field(500, ge=1)
    budget_gain: float = Field(0.005, gt=0, le=1, allow_inf_nan=False)
    budget_fill: float = Field(1.0, ge=0, le=1, allow_inf_nan=False)
    models: list[str] | None = Field(None, min_length=1)
    cold_start_share: float = Field(COLD_START_SHARE, ge=0, le=1, allow_inf_nan=False)
    cold_start_outcomes: int = Field(COLD_START_OUTCOMES, ge=0)

    @classmethod
    def from_params(cls, path="params.yaml", **overrides) -> ServeSettings:
        """``path``'s ``serve`` section (the price sheet from ``crossfit.prices`` unless it names one), then
        ``overrides`` (None values ignored). A missing or invalid file raises (:func:`load_settings`)."""
        s = load_settings(path)
        serve = s.serve.model_dump(exclude_unset=True)
        if serve.get("prices") is None and s.crossfit.prices:
            serve["prices"] = s.crossfit.prices
        serve.update({k: v for k, v in overrides.items() if v is not None})
        return _validated(cls, serve, f"{path}: serve")

    def price_sheet(self, root) -> Path | None:
        """The price sheet's path (a relative one is under the project ``root``); None when none is set."""
        if not self.prices:
            return None
        path = Path(self.prices)
        return path if path.is_absolute() else Path(root) / path

    def to_env(self) -> str:
        """JSON for ``$CAUSAL_ROUTER_SERVE_SETTINGS`` (how ``serve --workers N`` hands settings to each worker)."""
        return self.model_dump_json()

    @classmethod
    def from_env(cls, text: str) -> ServeSettings:
        return cls.model_validate(json.loads(text))


class IngestSettings(_Section):
    """``causal-router ingest`` and the retrain flow's ingest task."""

    holdout_fraction: float = Field(0.2, ge=0.0, le=1.0)
    holdout_max_rows: int | None = 2000  # None: each ingest's slice replaces the holdout
    # the holdout restarts when a model's IPS-weighted mean score in the new rows is change_z standard errors
    # from that of the logs since the holdout's oldest row (at least change_min_rows rows of it on each side;
    # None: never; serving/forget.py)
    change_z: float | None = Field(4.0, gt=0, allow_inf_nan=False)
    change_min_rows: int = Field(30, ge=2)
    # a gateway decision answered but without feedback this long after its answer is logged to
    # no_feedback.parquet (feedback_missing), never to the training logs (serving/ingest.py)
    reward_wait_s: float = Field(86400.0, ge=0.0, allow_inf_nan=False)


class Settings(_Section):
    """Every section of ``params.yaml``; ``evaluate.lambdas`` and ``promote.lambdas`` left null are the
    training grid."""

    data: DataSettings = Field(default_factory=DataSettings)
    artifacts: str = "artifacts"
    validate_: ValidateSettings = Field(default_factory=ValidateSettings, alias="validate")
    embed: EmbedSettings = Field(default_factory=EmbedSettings)
    runner: str = "local"
    crossfit: CrossfitSettings = Field(default_factory=CrossfitSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    evaluate: EvaluateSettings = Field(default_factory=EvaluateSettings)
    promote: PromoteSettings = Field(default_factory=PromoteSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _grid(self) -> Settings:
        for section in (self.evaluate, self.promote):
            if not section.lambdas:
                section.lambdas = list(self.train.lambdas)
        return self

    @property
    def validation(self) -> ValidateSettings:
        """The ``validate`` section (``validate`` is a pydantic method name, hence ``validate_``)."""
        return self.validate_

    def to_dict(self) -> dict:
        """The dict view, keyed as in params.yaml (e.g. for MLflow's params logging)."""
        return self.model_dump(by_alias=True)


def _where(loc: tuple) -> tuple[str, str]:
    """(section, key) of a pydantic error location."""
    parts = [str(p) for p in loc if not isinstance(p, int)]
    parts = ["validate" if p == "validate_" else p for p in parts]
    if len(parts) <= 1:
        return "", parts[0] if parts else ""
    return ".".join(parts[:-1]), parts[-1]


def _one_line(err: ValidationError, what: str) -> str:
    first = err.errors()[0]
    section, key = _where(first["loc"])
    if first["type"] == "extra_forbidden":
        return (f"{what}: unknown key {key!r} in section {section!r}" if section
                else f"{what}: unknown section {key!r}")
    name = f"{section}.{key}" if section else key
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{what}: {name}: {first['msg']}, got {first.get('input')!r}{more}"


def _validated(cls, raw: dict, what: str):
    try:
        return cls.model_validate(raw)
    except ValidationError as err:
        raise SettingsError(_one_line(err, what)) from None


def load_settings(path: str | Path = "params.yaml") -> Settings:
    """The settings of the params file at ``path`` over the defaults.

    Raises
    ------
    MissingFileError
        ``path`` does not exist (there is no silent fallback to the defaults).
    SettingsError
        The file is not YAML, not a mapping, or has an unknown section or key or a mistyped value;
        the one-line message names the file and the key.
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"params file not found: {str(p)!r}"
                               + (" (a folder)" if p.is_dir() else f" (looked in {Path.cwd()})"))
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        first = (str(err).strip().splitlines() or ["unreadable"])[0]
        raise SettingsError(f"{p}: not a readable params file (YAML): {first}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SettingsError(f"{p}: a params file maps sections (data, crossfit, ...) to settings, "
                            f"got {type(raw).__name__}")
    return _validated(Settings, raw, str(p))
